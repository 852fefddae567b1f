"""Path parameters that hold any text a client may name a thing with.

Inference ids, event ids, device and model names are the sender's own text, and may
hold a slash or a newline. Starlette's `path` convertor matches `.*`, which stops at a
newline, so an inference stored with one in its id could not be read back (a 404 from
the router). `{name:text}` matches every character; the API and the dashboard import
this module before they declare a route.
"""

from starlette.convertors import Convertor, register_url_convertor


class AnyText(Convertor[str]):
    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", AnyText())
