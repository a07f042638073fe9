"""One-line errors for logs, metrics and the CLI."""


class OneLineError(Exception):
    """An error whose str() is already one line naming what and where (no type prefix needed)."""


def one_line(exc: BaseException) -> str:
    """str(exc) for a OneLineError, else 'ExcType: first line of the message' (just the type
    when the message is empty)."""
    text = str(exc).strip().splitlines()
    if isinstance(exc, OneLineError) and text:
        return text[0]
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
