import pytest
from exosphere_server.engine.graph_shape import GraphShape, analyse_graph
from exosphere_server.engine.node_checks import RegisteredNode, check_registrations, is_plain_string
from exospherehost.models import GraphNodeModel, StoreConfigModel

STRING = {"type": "string", "title": "X"}


def schema(*required: str, **properties: dict) -> dict:
    return {"type": "object", "properties": properties, "required": list(required)}


def registered(name: str, inputs: dict | None = None, outputs: dict | None = None, secrets=()) -> RegisteredNode:
    return RegisteredNode(
        name=name,
        namespace="demo",
        inputs_schema=inputs or schema(),
        outputs_schema=outputs or schema(),
        secrets=list(secrets),
    )


@pytest.fixture
def shape() -> GraphShape:
    nodes = [
        GraphNodeModel(node_name="Load", namespace="demo", identifier="load", inputs={"src": "x"}, next_nodes=["work"]),
        GraphNodeModel(
            node_name="Work",
            namespace="demo",
            identifier="work",
            inputs={"path": "${{ load.outputs.path }}/${{ store.k }}", "extra": "kept"},
        ),
    ]
    return analyse_graph(nodes, StoreConfigModel(default_values={"k": "v"}), {})


def load(inputs: dict, outputs: dict | None = None, secrets=()) -> RegisteredNode:
    """The root node's registration; its outputs match the graph unless a test says otherwise."""
    return registered("Load", inputs, outputs or schema("path", path=STRING), secrets)


def registry(*nodes: RegisteredNode) -> dict[tuple[str, str], RegisteredNode]:
    return {(n.name, n.namespace): n for n in nodes}


def test_matching_registrations_give_no_errors_or_warnings(shape):
    report = check_registrations(
        shape,
        registry(
            registered("Load", schema("src", src=STRING), schema("path", path=STRING), secrets=["api_key"]),
            registered("Work", schema("path", path=STRING)),
        ),
        secret_names={"api_key"},
    )
    assert report.errors == [] and report.warnings == []


def test_unregistered_node_is_a_warning_not_an_error(shape):
    report = check_registrations(shape, registry(load(schema("src", src=STRING))), [])
    assert report.errors == []
    assert report.warnings == [
        "Node Work in namespace demo is not registered yet; its states wait until a runtime registers it"
    ]


def test_unregistered_pair_is_warned_once():
    nodes = [
        GraphNodeModel(node_name="Same", namespace="demo", identifier="a", next_nodes=["b"]),
        GraphNodeModel(node_name="Same", namespace="demo", identifier="b"),
    ]
    report = check_registrations(analyse_graph(nodes, StoreConfigModel(), {}), {}, [])
    assert len(report.warnings) == 1


def test_output_references_to_unregistered_nodes_wait_for_registration(shape):
    report = check_registrations(shape, registry(registered("Work", schema("path", path=STRING))), [])
    assert report.errors == []


def test_schema_input_missing_from_graph_is_an_error(shape):
    report = check_registrations(shape, registry(load(schema("src", "limit", src=STRING, limit=STRING))), [])
    assert report.errors == [
        "Input 'limit' of node 'load' (Load in namespace demo) is required by the registered node "
        "but missing from the graph"
    ]


def test_schema_input_with_default_may_be_omitted(shape):
    inputs = schema("src", src=STRING, limit={"type": "string", "default": "10"})
    assert check_registrations(shape, registry(load(inputs)), []).errors == []


def test_schema_input_not_listed_as_required_may_be_omitted(shape):
    inputs = schema("src", src=STRING, limit=STRING)
    assert check_registrations(shape, registry(load(inputs)), []).errors == []


def test_schema_without_required_list_needs_every_input(shape):
    inputs = {"properties": {"src": STRING, "limit": STRING}}
    assert len(check_registrations(shape, registry(load(inputs)), []).errors) == 1


@pytest.mark.parametrize(
    "field_schema",
    [{"type": "integer"}, {"anyOf": [{"type": "string"}, {"type": "null"}]}, {"type": "string", "anyOf": []}, {}],
)
def test_non_string_schema_input_is_an_error(shape, field_schema):
    report = check_registrations(shape, registry(load(schema("src", src=field_schema))), [])
    assert report.errors == [
        "Input 'src' of node 'load' (Load in namespace demo) is not a string in the registered inputs schema"
    ]


def test_missing_output_field_is_an_error(shape):
    report = check_registrations(shape, registry(load(schema("src", src=STRING), schema())), [])
    assert report.errors == [
        "Input 'path' of node 'work' reads 'load.outputs.path' but Load in namespace demo has no output field 'path'"
    ]


def test_non_string_output_field_is_an_error(shape):
    outputs = schema("path", path={"type": "array", "items": STRING})
    report = check_registrations(shape, registry(load(schema("src", src=STRING), outputs)), [])
    assert report.errors == [
        (
            "Input 'path' of node 'work' reads 'load.outputs.path' but output field 'path' of Load in namespace demo"
            " is not a string"
        )
    ]


def test_secret_needed_by_a_node_must_be_defined_by_the_graph(shape):
    node = registered("Load", schema("src", src=STRING), schema("path", path=STRING), secrets=["api_key", "db"])
    report = check_registrations(shape, registry(node), secret_names={"db"})
    assert report.errors == [
        "Secret 'api_key' needed by node 'load' (Load in namespace demo) is not defined in the graph template"
    ]


def test_plain_string_detection():
    assert is_plain_string({"type": "string", "title": "T", "default": "x"})
    assert not is_plain_string({"type": ["string", "null"]})
    assert not is_plain_string({"$ref": "#/defs/S"})
    assert not is_plain_string("string")


def test_pydantic_inputs_schema_of_a_python_node_is_understood(shape):
    from pydantic import BaseModel

    class Inputs(BaseModel):
        src: str
        limit: str = "10"

    class BadInputs(BaseModel):
        src: str | None

    assert check_registrations(shape, registry(load(Inputs.model_json_schema())), []).errors == []
    assert len(check_registrations(shape, registry(load(BadInputs.model_json_schema())), []).errors) == 1
