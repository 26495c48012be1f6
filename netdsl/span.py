"""Source spans: where in which file a piece of syntax came from.

A span is made for every token the parser keeps, so it is a plain slots class
rather than a pydantic model: importing this module costs nothing, and making
one is a few attribute stores. The IR, which is pydantic, embeds spans through
``__get_pydantic_core_schema__``; their JSON is the object of their fields, as
before, and the IR still round-trips through it.
"""

from __future__ import annotations

_FIELDS = ("file", "line", "column", "end_line", "end_column")


class Span:
    """A 1-based, end-inclusive range of a source file.

    Spans never take part in equality, so two IR trees built from specs that
    differ only in layout compare equal:

    >>> Span(file="a.net", line=1, column=1) == Span(file="b.net", line=9, column=4)
    True
    >>> Span(line=2, column=5).replace(end_column=9)
    Span(file=None, line=2, column=5, end_line=None, end_column=9)
    """

    __slots__ = _FIELDS

    file: str | None
    line: int
    column: int
    end_line: int | None
    end_column: int | None

    def __init__(self, *, file: str | None = None, line: int, column: int,
                 end_line: int | None = None, end_column: int | None = None) -> None:
        setter = object.__setattr__
        setter(self, "file", file)
        setter(self, "line", line)
        setter(self, "column", column)
        setter(self, "end_line", end_line)
        setter(self, "end_column", end_column)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Span is immutable: use .replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Span is immutable: use .replace({name}=...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Span)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "Span(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in _FIELDS) + ")"

    def __reduce__(self):
        # The default pickling of a slots class sets attributes, which a frozen one refuses.
        return (_span_from_fields, tuple(getattr(self, k) for k in _FIELDS))

    def where(self) -> str:
        """``file:line:column`` as compilers print it.

        >>> Span(file="a.net", line=3, column=7).where()
        'a.net:3:7'
        """
        return f"{self.file or '<spec>'}:{self.line}:{self.column}"

    def replace(self, **changes) -> Span:
        """A copy with some fields changed.

        >>> Span(line=1, column=2).replace(line=4).line
        4
        """
        fields = self.as_dict()
        fields.update(changes)
        return Span(**fields)

    def as_dict(self) -> dict:
        """The fields by name: the span's JSON object in the IR.

        >>> Span(line=1, column=2).as_dict()
        {'file': None, 'line': 1, 'column': 2, 'end_line': None, 'end_column': None}
        """
        return {k: getattr(self, k) for k in _FIELDS}

    # The names pydantic models have, for code written when Span was one.
    def model_dump(self) -> dict:
        """:meth:`as_dict`, under the name pydantic gives it.

        >>> Span(line=1, column=2).model_dump()["column"]
        2
        """
        return self.as_dict()

    def model_copy(self, *, update: dict | None = None) -> Span:
        """:meth:`replace`, under the name pydantic gives it.

        >>> Span(line=1, column=2).model_copy(update={"column": 3}).column
        3
        """
        return self.replace(**(update or {}))

    @classmethod
    def __get_pydantic_core_schema__(cls, source, handler):
        """How pydantic validates and serialises a span inside an IR model: a Span
        passes as it is; a mapping (the JSON object) is checked field by field,
        unknown keys refused, and becomes a Span."""
        from pydantic_core import core_schema as cs

        def opt(schema):
            return cs.typed_dict_field(cs.nullable_schema(schema), required=False)

        fields = cs.typed_dict_schema({
            "file": opt(cs.str_schema()),
            "line": cs.typed_dict_field(cs.int_schema()),
            "column": cs.typed_dict_field(cs.int_schema()),
            "end_line": opt(cs.int_schema()),
            "end_column": opt(cs.int_schema()),
        }, extra_behavior="forbid")
        from_fields = cs.no_info_after_validator_function(lambda d: cls(**d), fields)
        return cs.json_or_python_schema(
            json_schema=from_fields,
            python_schema=cs.union_schema([cs.is_instance_schema(cls), from_fields]),
            serialization=cs.plain_serializer_function_ser_schema(cls.as_dict),
        )


def _span_from_fields(file, line, column, end_line, end_column) -> Span:
    return Span(file=file, line=line, column=column, end_line=end_line, end_column=end_column)
