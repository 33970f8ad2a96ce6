import pytest
from exosphere_server.engine.placeholders import (
    OutputRef,
    PlaceholderError,
    StoreRef,
    Template,
    parse_template,
    render,
)


def test_plain_text_has_no_references():
    template = parse_template("just text }} with a closer")
    assert template == Template(head="just text }} with a closer")
    assert template.refs == ()


def test_output_and_store_references_are_parsed_in_order():
    template = parse_template("s3://bucket/${{ store.prefix }}/${{load.outputs.name}}.json")
    assert template.head == "s3://bucket/"
    assert template.parts == ((StoreRef("prefix"), "/"), (OutputRef("load", "name"), ".json"))
    assert template.refs == (StoreRef("prefix"), OutputRef("load", "name"))


def test_spaces_around_dots_are_allowed():
    assert parse_template("${{ a . outputs . b }}").refs == (OutputRef("a", "b"),)


def test_store_outputs_form_reads_the_store_key():
    assert parse_template("${{ store.outputs.x }}").refs == (StoreRef("x"),)


def test_text_after_the_first_closer_is_literal():
    assert parse_template("${{ a.outputs.b }}}}tail").parts == ((OutputRef("a", "b"), "}}tail"),)


def test_unclosed_placeholder_is_rejected():
    with pytest.raises(PlaceholderError, match="not closed"):
        parse_template("x ${{ a.outputs.b ")


@pytest.mark.parametrize(
    "body",
    ["a.b", "a.inputs.b", "a.outputs.b.c", "store", "store.a.b", "", "store.", ".outputs.x", "a.outputs."],
)
def test_malformed_placeholder_is_rejected(body):
    with pytest.raises(PlaceholderError, match="Invalid syntax string placeholder"):
        parse_template("${{" + body + "}}")


def test_placeholder_error_is_a_value_error():
    assert issubclass(PlaceholderError, ValueError)


def test_render_substitutes_each_value_followed_by_its_tail():
    template = parse_template("a=${{ x.outputs.v }}, k=${{ store.k }}!")
    values = {OutputRef("x", "v"): "1", StoreRef("k"): "2"}
    assert render(template, values.__getitem__) == "a=1, k=2!"


def test_render_refuses_non_string_values():
    with pytest.raises(PlaceholderError, match="not a string"):
        render(parse_template("${{ x.outputs.v }}"), lambda ref: 3)  # type: ignore[arg-type,return-value]


def test_render_lets_resolver_errors_through():
    def missing(ref):
        raise KeyError(str(ref))

    with pytest.raises(KeyError, match=r"store\.k"):
        render(parse_template("${{ store.k }}"), missing)
