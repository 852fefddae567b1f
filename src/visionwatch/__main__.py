from visionwatch.cli import main

main()
