"""Tests for toolprm_agents.schema: sources, normalisation, errors, values."""

from __future__ import annotations

import copy
import importlib.util
import json
import pickle
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal, Optional

import pytest
from langchain_core.tools import BaseTool, StructuredTool, tool
from pydantic import BaseModel, Field

from toolprm_agents.schema import (
    MISSING,
    ArgSpec,
    ToolSpec,
    ToolSpecError,
    keep_mismatched_enums,
    example_value,
    to_tool_spec,
    to_tool_specs,
    validate_call,
    validate_value,
)


def bare(name="t", properties=None, required=(), **extra):
    """A bare OpenAI/BFCL function doc."""
    params = {"type": "object", "properties": properties or {}, "required": list(required), **extra}
    return {"name": name, "description": "d", "parameters": params}


def arg_schema(schema, name="x"):
    """Normalise a single value schema through a one-argument tool."""
    return to_tool_spec(bare(properties={name: schema})).arg(name).schema


# --------------------------------------------------------------------------- pydantic


class Color(str, Enum):
    red = "red"
    blue = "blue"


class Address(BaseModel):
    """A postal address."""

    street: str
    zip: Optional[str] = None


class book_room(BaseModel):
    """Book a hotel room."""

    guest: str = Field(description="Guest name")
    address: Address = Field(description="Billing address")
    alt_address: Optional[Address] = None
    color: Color = Color.red
    size: Literal["s", "m"] = "s"
    fixed: Literal["x"] = "x"
    tags: list[str] = []
    scores: dict[str, int] = {}
    coords: tuple[float, float] = (0.0, 0.0)
    nights: int = Field(default=1, ge=1, le=30)


def test_pydantic_model():
    spec = to_tool_spec(book_room)
    assert spec.name == "book_room"
    assert spec.description == "Book a hotel room."
    assert [a.name for a in spec.args] == [
        "guest", "address", "alt_address", "color", "size", "fixed", "tags", "scores", "coords", "nights"
    ]
    assert spec.required == ("guest", "address")
    guest = spec.arg("guest")
    assert guest.schema == {"type": "string", "description": "Guest name"}
    assert guest.description == "Guest name" and guest.default is MISSING and guest.required
    address = {
        "type": "object",
        "properties": {
            "street": {"type": "string"},
            "zip": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        },
        "required": ["street"],
    }
    assert spec.arg("address").schema == {**address, "description": "Billing address"}
    alt = spec.arg("alt_address")
    assert alt.schema == {"anyOf": [{**address, "description": "A postal address."}, {"type": "null"}]}
    assert alt.default is None and not alt.required
    assert spec.arg("color").schema == {"type": "string", "enum": ["red", "blue"]}
    assert spec.arg("color").default == "red"
    assert spec.arg("size").schema == {"type": "string", "enum": ["s", "m"]}
    assert spec.arg("fixed").schema == {"type": "string", "const": "x"}
    assert spec.arg("tags").schema == {"type": "array", "items": {"type": "string"}}
    assert spec.arg("tags").default == []
    assert spec.arg("scores").schema == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert spec.arg("coords").schema == {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
    assert spec.arg("nights").schema == {"type": "integer", "minimum": 1, "maximum": 30}
    assert "$ref" not in json.dumps(spec.to_json_schema())


def test_pydantic_model_without_docstring_and_recursive_model():
    class plain(BaseModel):
        x: int

    assert to_tool_spec(plain).description == ""

    class Node(BaseModel):
        value: int
        children: list["Node"] = []

    class tree_tool(BaseModel):
        root: Node

    with pytest.raises(ToolSpecError, match=r"tool 'tree_tool': argument 'root.children\[\]': recursive \$ref"):
        to_tool_spec(tree_tool)


def test_pydantic_heterogeneous_tuple_is_unsupported():
    class pair_tool(BaseModel):
        pair: tuple[int, str]

    with pytest.raises(ToolSpecError, match=r"tool 'pair_tool': argument 'pair': .*'prefixItems'"):
        to_tool_spec(pair_tool)


# --------------------------------------------------------------------------- LangChain


def test_langchain_tool_decorator():
    @tool
    def search(query: str, limit: int = 5) -> str:
        """Search the web."""
        return query

    spec = to_tool_spec(search)
    assert spec.name == "search"
    assert spec.description == "Search the web."
    assert spec.required == ("query",)
    assert spec.arg("query").schema == {"type": "string"}
    assert spec.arg("limit").default == 5


def test_langchain_structured_tool_with_model_and_dict_schema():
    class MulArgs(BaseModel):
        a: int = Field(description="first")
        b: float

    mul = StructuredTool.from_function(func=lambda a, b: a * b, name="multiply", description="Multiply.",
                                       args_schema=MulArgs)
    spec = to_tool_spec(mul)
    assert (spec.name, spec.description, spec.required) == ("multiply", "Multiply.", ("a", "b"))
    assert spec.arg("a").schema == {"type": "integer", "description": "first"}
    assert spec.arg("b").schema == {"type": "number"}

    echo = StructuredTool.from_function(
        func=lambda x: x, name="echo", description="Echo.",
        args_schema={"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]},
    )
    assert to_tool_spec(echo).args == (ArgSpec("x", {"type": "integer"}, True),)


def test_langchain_basetool_subclass():
    class LookupArgs(BaseModel):
        key: str = Field(description="Key to look up")
        default: Optional[str] = None

    class Lookup(BaseTool):
        name: str = "lookup"
        description: str = "Look a key up."
        args_schema: type[BaseModel] = LookupArgs

        def _run(self, key: str, default: Optional[str] = None) -> str:
            return key

    spec = to_tool_spec(Lookup())
    assert spec.name == "lookup" and spec.required == ("key",)
    assert spec.arg("default").schema == {"anyOf": [{"type": "string"}, {"type": "null"}]}


def test_langchain_tool_with_invalid_name():
    bad = StructuredTool.from_function(func=lambda x: x, name="get weather", description="d",
                                       args_schema={"type": "object", "properties": {}})
    with pytest.raises(ToolSpecError, match="'get weather'"):
        to_tool_spec(bad)


# --------------------------------------------------------------------------- functions


def get_forecast(city: str, days: Annotated[int, Field(ge=1)] = 1, unit: Optional[Literal["c", "f"]] = None,
                 places: list[Address] | None = None) -> str:
    """Weather forecast for a city.

    Uses the default provider.

    Args:
        city: The city
            name.
        days (int): How many days ahead.
        unit: Temperature unit.

    Returns:
        The forecast.
    """
    return city


def test_typed_function():
    spec = to_tool_spec(get_forecast)
    assert spec.name == "get_forecast"
    assert spec.description == "Weather forecast for a city."
    assert spec.required == ("city",)
    assert spec.arg("city").schema == {"type": "string", "description": "The city name."}
    assert spec.arg("days").schema == {"type": "integer", "minimum": 1, "description": "How many days ahead."}
    assert spec.arg("days").default == 1
    assert spec.arg("unit").schema == {
        "anyOf": [{"type": "string", "enum": ["c", "f"]}, {"type": "null"}],
        "description": "Temperature unit.",
    }
    places = spec.arg("places").schema["anyOf"][0]
    assert places["type"] == "array" and places["items"]["properties"]["street"] == {"type": "string"}


def test_function_errors():
    def untyped(a: int, b):
        pass

    def variadic(a: int, *rest: int):
        pass

    def bad_default(a: object = object()):
        pass

    with pytest.raises(ToolSpecError, match=r"tool 'untyped': argument 'b': .*no type annotation"):
        to_tool_spec(untyped)
    with pytest.raises(ToolSpecError, match=r"tool 'variadic': argument 'rest'"):
        to_tool_spec(variadic)
    with pytest.raises(ToolSpecError, match=r"tool 'bad_default': argument 'a'"):
        to_tool_spec(bad_default)
    with pytest.raises(ToolSpecError, match="'<lambda>'"):
        to_tool_spec(lambda x: x)


# --------------------------------------------------------------------------- dicts


def test_openai_dicts_both_shapes_and_roundtrip():
    inner = {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "title": "City", "description": "City name"},
                "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
    wrapped = to_tool_spec({"type": "function", "function": inner})
    assert wrapped == to_tool_spec(inner)
    assert wrapped == to_tool_spec({"type": "function", **inner})  # Responses-API flat shape
    assert wrapped.arg("city").schema == {"type": "string", "description": "City name"}
    assert wrapped.arg("unit").default == "c" and "default" not in wrapped.arg("unit").schema
    openai = wrapped.to_openai()
    assert openai == {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name"},
                    "unit": {"type": "string", "enum": ["c", "f"], "default": "c"},
                },
                "required": ["city"],
            },
        },
    }
    assert to_tool_spec(openai) == wrapped


def test_dict_without_parameters_and_passthrough():
    spec = to_tool_spec({"name": "ping"})
    assert spec == ToolSpec("ping", "", ())
    assert to_tool_spec(spec) is spec
    assert to_tool_spec({"name": "ping", "parameters": {}}).args == ()


def test_bfcl_doc():
    doc = {
        "name": "geo.distance",
        "description": "Distance.",
        "parameters": {
            "type": "dict",
            "properties": {
                "a": {"type": "tuple", "items": {"type": "float"}, "description": "Point A."},
                "scale": {"type": "float", "default": 1.0},
                "data": {"type": "any"},
                "opts": {
                    "type": "dict",
                    "properties": {"mode": {"type": "string", "enum": ["fast", "exact"], "default": "fast"}},
                    "required": ["mode"],
                },
                "grades": {"type": "dict", "description": "subject -> score"},
                "metrics": {"type": "array", "items": {"type": "string"}, "enum": ["t", "h"]},
                "year": {"type": "integer", "optional": True, "default": 2023},
                "names": {"type": "array"},
            },
            "required": ["a", "opts"],
            "optional": ["scale"],
        },
    }
    spec = to_tool_spec(doc)
    assert spec.name == "geo.distance" and spec.required == ("a", "opts")
    assert spec.arg("a").schema == {"type": "array", "items": {"type": "number"}, "description": "Point A."}
    assert spec.arg("scale").schema == {"type": "number"} and spec.arg("scale").default == 1.0
    assert spec.arg("data").schema == {}
    assert spec.arg("opts").schema == {
        "type": "object",
        "properties": {"mode": {"type": "string", "enum": ["fast", "exact"], "default": "fast"}},
        "required": ["mode"],
    }
    assert spec.arg("grades").schema == {"type": "object", "description": "subject -> score"}
    # BFCL's "array with an enum" means "a list of these values".
    assert spec.arg("metrics").schema == {"type": "array", "items": {"type": "string", "enum": ["t", "h"]}}
    assert spec.arg("year").schema == {"type": "integer"}
    assert spec.arg("names").schema == {"type": "array", "items": {}}


def test_bfcl_nested_required_without_properties_is_accepted():
    # BFCL's waste_calculation.calculate: an open object whose required keys are undeclared.
    schema = arg_schema({"type": "dict", "required": ["adults", "children"]})
    assert schema == {"type": "object", "required": ["adults", "children"]}
    assert validate_value(schema, {"adults": 1}) == ["missing required property 'children'"]


def test_enum_not_matching_type_is_an_error_except_for_bfcl():
    with pytest.raises(ToolSpecError, match="not of the declared type integer"):
        arg_schema({"type": "integer", "enum": ["1", "2"]})
    with pytest.raises(ToolSpecError, match="'const'"):
        arg_schema({"type": "string", "const": 3})
    assert arg_schema({"type": "integer", "enum": [1, 2.0]}) == {"type": "integer", "enum": [1, 2.0]}
    with keep_mismatched_enums():  # BFCL's data, whose gold answers use the enum's values
        assert arg_schema({"type": "integer", "enum": ["1", "2"]}) == {"type": "integer", "enum": ["1", "2"]}


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "source, expected",
    [
        ({"type": ["string", "null"], "maxLength": 3, "description": "d"},
         {"anyOf": [{"type": "string", "maxLength": 3}, {"type": "null"}], "description": "d"}),
        ({"type": ["integer"]}, {"type": "integer"}),
        ({"type": ["string", "null"], "enum": ["a", None]}, {"enum": ["a", None]}),
        ({"type": ["array", "string"]}, {"anyOf": [{"type": "array", "items": {}}, {"type": "string"}]}),
        ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, {"anyOf": [{"type": "integer"}, {"type": "string"}]}),
        ({"allOf": [{"type": "integer", "minimum": 0}], "description": "n"},
         {"type": "integer", "minimum": 0, "description": "n"}),
        ({"type": "string", "nullable": True, "description": "d"},
         {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "d"}),
        ({"type": "string", "title": "T", "examples": ["a"], "$comment": "c", "format": "date"},
         {"type": "string", "format": "date"}),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
         {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}),
        ({"type": "array", "items": {"type": "integer"}, "uniqueItems": False},
         {"type": "array", "items": {"type": "integer"}}),
        ({"type": "object", "additionalProperties": True}, {"type": "object", "additionalProperties": True}),
        (True, {}),
        ({"type": "any"}, {}),
        ({"type": "number", "exclusiveMinimum": 0, "maximum": 1.5},
         {"type": "number", "exclusiveMinimum": 0, "maximum": 1.5}),
    ],
)
def test_normalisation(source, expected):
    assert arg_schema(source) == expected


def test_ref_resolution_with_sibling_description_and_definitions():
    params = {
        "type": "object",
        "properties": {"p": {"$ref": "#/definitions/Point", "description": "a point"}},
        "required": ["p"],
        "definitions": {"Point": {"type": "object", "title": "Point", "properties": {"x": {"type": "number"}}}},
    }
    spec = to_tool_spec({"name": "t", "parameters": params})
    assert spec.arg("p").schema == {"type": "object", "properties": {"x": {"type": "number"}}, "description": "a point"}


@pytest.mark.parametrize(
    "schema, path, what",
    [
        ({"type": "object", "properties": {"ages": {"not": {"type": "null"}}}}, "guests.ages", "'not'"),
        ({"type": "array", "items": {"not": {}}}, "guests[]", "'not'"),
        ({"if": {"type": "string"}, "then": {"minLength": 1}}, "guests", "'if'"),
        ({"type": "object", "patternProperties": {"^a": {}}}, "guests", "'patternProperties'"),
        ({"type": "object", "dependentSchemas": {"a": {}}}, "guests", "'dependentSchemas'"),
        ({"allOf": [{"type": "string"}, {"minLength": 1}]}, "guests", "'allOf' with 2"),
        ({"$ref": "#/$defs/Nope"}, "guests", "unresolvable \\$ref '#/\\$defs/Nope'"),
        ({"$ref": "https://example.com/s.json"}, "guests", "unresolvable \\$ref"),
        ({"type": "hashmap"}, "guests", "unknown type 'hashmap'"),
        ({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "hashmap"}}}},
         "guests.a[]", "unknown type 'hashmap'"),
        ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "guests", "'b'"),
        ({"enum": []}, "guests", "'enum'"),
        ({"enum": [{"a": 1}]}, "guests", "'enum'"),
        ({"type": "string", "minLength": -1}, "guests", "'minLength'"),
    ],
)
def test_unsupported_constructs_name_tool_and_path(schema, path, what):
    with pytest.raises(ToolSpecError, match=rf"^tool 'book': argument '{re.escape(path)}'.*{what}"):
        to_tool_spec(bare("book", {"guests": schema}))


def test_recursive_ref_in_dict():
    params = {
        "type": "object",
        "properties": {"node": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    with pytest.raises(ToolSpecError, match=r"tool 'walk': argument 'node.next': recursive \$ref"):
        to_tool_spec({"name": "walk", "parameters": params})


# --------------------------------------------------------------------------- validation errors


def test_empty_and_duplicate_tool_lists():
    with pytest.raises(ToolSpecError, match="empty tool list"):
        to_tool_specs([])
    with pytest.raises(ToolSpecError, match="duplicate tool name 'get_forecast'"):
        to_tool_specs([get_forecast, bare("other"), {"type": "function", "function": bare("get_forecast")}])
    with pytest.raises(ToolSpecError, match="iterable of tools"):
        to_tool_specs(bare("single"))
    assert [s.name for s in to_tool_specs([get_forecast, bare("other")])] == ["get_forecast", "other"]


@pytest.mark.parametrize("name", ["get weather", "", "1abc", 'a"b', "a.", ".a", "a..b", "a/b", "x" * 129])
def test_invalid_tool_names(name):
    with pytest.raises(ToolSpecError, match="invalid tool name") as info:
        to_tool_spec(bare(name))
    assert repr(name)[:40] in str(info.value) or len(name) > 128


@pytest.mark.parametrize("name", ["math.factorial", "ChaDri.change_drink", "get-weather", "_x", "a.b_c.d-e", "x" * 128])
def test_valid_tool_names(name):
    assert to_tool_spec(bare(name)).name == name


def test_non_string_tool_name():
    with pytest.raises(ToolSpecError, match="tool name must be a string"):
        to_tool_spec({"name": 3, "parameters": {"type": "object", "properties": {}}})


@pytest.mark.parametrize("arg", ["", 'say"hi', "back\\slash", "new\nline", "tab\tname"])
def test_invalid_argument_names(arg):
    with pytest.raises(ToolSpecError, match=r"^tool 'bad_args': invalid argument name") as info:
        to_tool_spec(bare("bad_args", {arg: {"type": "string"}}))
    assert repr(arg) in str(info.value)


def test_invalid_nested_argument_name_has_path():
    with pytest.raises(ToolSpecError, match=r"tool 't': argument 'outer': invalid argument name 'a\"b'"):
        to_tool_spec(bare("t", {"outer": {"type": "object", "properties": {'a"b': {}}}}))


@pytest.mark.parametrize("params", [
    {"type": "array", "items": {"type": "string"}},
    {"type": "string"},
    {"anyOf": [{"type": "object", "properties": {}}, {"type": "null"}]},
    {"items": {}},
    [1, 2],
])
def test_parameters_must_be_an_object(params):
    with pytest.raises(ToolSpecError, match=r"^tool 'listy': parameters must be"):
        to_tool_spec({"name": "listy", "parameters": params})


def test_required_names_missing_argument():
    with pytest.raises(ToolSpecError, match=r"tool 'need': .*'required' names 'ghost'"):
        to_tool_spec(bare("need", {"a": {"type": "string"}}, required=["a", "ghost"]))


@pytest.mark.parametrize("obj", [42, "get_weather", object(), {"description": "no name"}, int, [bare()]])
def test_unrecognised_objects(obj):
    with pytest.raises(ToolSpecError, match=r"BaseModel|'name'") as info:
        to_tool_spec(obj)
    assert "OpenAI" in str(info.value)


def test_toolspec_checks_and_arg_lookup():
    spec = to_tool_spec(get_forecast)
    with pytest.raises(ToolSpecError, match=r"tool 'get_forecast': no argument 'town'"):
        spec.arg("town")
    with pytest.raises(ToolSpecError, match="duplicate argument name 'a'"):
        ToolSpec("t", "", (ArgSpec("a", {}, True), ArgSpec("a", {}, False)))
    with pytest.raises(ToolSpecError, match="invalid tool name 'bad name'"):
        ToolSpec("bad name", "", ())
    assert ToolSpec("t", "", [ArgSpec("a", {}, True)]).args == (ArgSpec("a", {}, True),)


def test_to_json_schema_restores_defaults_and_does_not_alias():
    spec = to_tool_spec(bare("t", {"n": {"type": "integer", "default": 3, "description": "count"}}))
    schema = spec.to_json_schema()
    assert schema == {
        "type": "object",
        "properties": {"n": {"type": "integer", "description": "count", "default": 3}},
        "required": [],
    }
    schema["properties"]["n"]["type"] = "string"
    assert spec.arg("n").schema["type"] == "integer"
    direct = ToolSpec("t", "", (ArgSpec("a", {"type": "string"}, False, None, "an a"),))
    assert direct.to_json_schema()["properties"]["a"] == {"type": "string", "description": "an a", "default": None}


def test_missing_sentinel():
    assert repr(MISSING) == "MISSING" and not MISSING
    assert copy.deepcopy(MISSING) is MISSING and pickle.loads(pickle.dumps(MISSING)) is MISSING


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "schema, value, problem",
    [
        ({"type": "integer"}, 2.0, "expected integer, got number 2.0"),
        ({"type": "integer"}, True, "expected integer, got boolean True"),
        ({"type": "number"}, False, "expected number"),
        ({"type": "number"}, float("nan"), "expected number"),
        ({"type": "string"}, None, "expected string, got null"),
        ({"type": "null"}, 0, "expected null"),
        ({"type": "boolean"}, "true", "expected boolean"),
        ({"type": "array", "items": {}}, (), None),
        ({"type": "object"}, [], "expected object"),
        ({"enum": [1, 2]}, True, "is not one of"),
        ({"enum": [True]}, 1, "is not one of"),
        ({"enum": [1, 2]}, 1.0, None),
        ({"const": "x"}, "y", "expected 'x'"),
        ({"type": "string", "minLength": 2, "maxLength": 3}, "a", "shorter than minLength 2"),
        ({"type": "string", "minLength": 2, "maxLength": 3}, "abcd", "longer than maxLength 3"),
        ({"type": "string", "pattern": "^[a-z]+$"}, "ab1", "does not match pattern"),
        ({"type": "integer", "minimum": 1}, 0, "less than the minimum 1"),
        ({"type": "integer", "maximum": 1}, 2, "greater than the maximum 1"),
        ({"type": "number", "exclusiveMinimum": 0}, 0, "not greater than the exclusive minimum 0"),
        ({"type": "number", "exclusiveMaximum": 1}, 1.0, "not less than the exclusive maximum 1"),
        ({"type": "array", "items": {}, "minItems": 1}, [], "fewer than minItems 1"),
        ({"type": "array", "items": {}, "maxItems": 1}, [1, 2], "more than maxItems 1"),
        ({"type": "array", "items": {"type": "integer"}}, [1, "2"], "[1]: expected integer, got string '2'"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, "3", "matches none of the 2 alternatives"),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, None, None),
        ({}, {"any": ["thing"]}, None),
    ],
)
def test_validate_value(schema, value, problem):
    problems = validate_value(schema, value)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0], problems


def test_validate_value_objects():
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
        "required": ["name"],
        "additionalProperties": False,
    }
    assert validate_value(schema, {"name": "a", "age": 3}) == []
    assert validate_value(schema, {"age": -1, "extra": 1}) == [
        "missing required property 'name'",
        "age: -1 is less than the minimum 0",
        "unexpected property 'extra'",
    ]
    scores = {"type": "object", "additionalProperties": {"type": "integer"}}
    assert validate_value(scores, {"math": 1, "art": 1.5}) == ["art: expected integer, got number 1.5"]


def test_validate_call():
    spec = to_tool_spec(book_room)
    good = {"guest": "Ann", "address": {"street": "Main St"}}
    assert validate_call(spec, good) == []
    assert validate_call(spec, {**good, "nights": 31, "address": {"street": 5}, "pets": 2}) == [
        "unknown argument 'pets'",
        "argument 'address.street': expected string, got integer 5",
        "argument 'nights': 31 is greater than the maximum 30",
    ]
    assert validate_call(spec, {"guest": "Ann"}) == ["missing required argument 'address'"]
    assert validate_call(spec, {**good, "tags": ["a", 1]}) == ["argument 'tags[1]': expected string, got integer 1"]
    assert validate_call(spec, ["Ann"]) == ["arguments must be a JSON object, got array ['Ann']"]


@pytest.mark.parametrize(
    "schema",
    [
        {},
        {"type": "null"},
        {"type": "boolean"},
        {"type": "integer", "minimum": 3},
        {"type": "integer", "exclusiveMinimum": 3, "maximum": 10},
        {"type": "integer", "maximum": -5},
        {"type": "integer", "exclusiveMaximum": 0},
        {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        {"type": "number", "minimum": 2.5},
        {"type": "string", "minLength": 20},
        {"type": "string", "maxLength": 2},
        {"type": "string", "format": "date"},
        {"type": "string", "enum": ["c", "f"]},
        {"enum": [1, "x"]},
        {"const": {"k": [1]}},
        {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        {"type": "array", "items": {"type": "integer"}, "minItems": 2},
        {"type": "object", "properties": {"a": {"type": "boolean"}, "b": {}}, "required": ["a"]},
        {"type": "object", "required": ["undeclared"]},
    ],
)
def test_example_value_is_valid(schema):
    value = example_value(schema)
    assert validate_value(schema, value) == []
    json.dumps(value)


def test_example_value_shapes():
    assert example_value({"type": "integer", "minimum": 3}) == 3
    assert example_value({"type": "array", "items": {"type": "string"}}) == []
    assert example_value({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"]}) == {"a": False}
    for arg in to_tool_spec(book_room).args:
        assert validate_value(arg.schema, example_value(arg.schema)) == []


# --------------------------------------------------------------------------- BFCL data

BFCL_FILES = [
    "simple_python", "multiple", "parallel", "parallel_multiple", "irrelevance",
    "live_simple", "live_multiple", "live_parallel", "live_parallel_multiple", "live_irrelevance",
]


def _bfcl_data_dir() -> Path:
    found = importlib.util.find_spec("bfcl_eval")
    if found is None or not found.submodule_search_locations:
        pytest.skip("bfcl_eval is not installed")
    return Path(list(found.submodule_search_locations)[0]) / "data"


def _enum_fits_type(schema: dict) -> bool:
    """False for BFCL's enums whose values contradict the declared type (kept as written)."""
    if "enum" in schema and "type" in schema and validate_value({"type": schema["type"]}, schema["enum"][0]):
        return False
    children = [*schema.get("properties", {}).values(), *schema.get("anyOf", [])]
    if isinstance(schema.get("items"), dict):
        children.append(schema["items"])
    return all(_enum_fits_type(c) for c in children)


@pytest.mark.parametrize("file", BFCL_FILES)
def test_every_bfcl_function_doc_normalises(file):
    path = _bfcl_data_dir() / f"BFCL_v4_{file}.json"
    docs = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if not entry["function"]:  # a few live_irrelevance entries offer no tools at all
            continue
        with keep_mismatched_enums():  # BFCL's data (the benchmark reads it so)
            specs = to_tool_specs(entry["function"])
            for spec in specs:
                docs += 1
                assert to_tool_spec(spec.to_openai()) == spec
                for arg in spec.args:
                    if _enum_fits_type(arg.schema):
                        assert validate_value(arg.schema, example_value(arg.schema)) == [], (spec.name, arg.name)
    assert docs > 0
