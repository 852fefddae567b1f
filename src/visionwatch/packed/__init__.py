"""An inference as stored: one compact row (docs/architecture.md, "The stored form"). Pure.

- `ids`: an inference id in its smallest exact form (a UUID as 16 bytes);
- `wire`: the varints and fixed-width numbers the forms are written in;
- `body`: what was predicted and said of an inference, packed;
- `remainder`: what a client sent beyond the known fields, as a patch of their rendering;
- `tags`: the classes, metadata fields and values an inference carries, as text that SQL
  searches.
"""
