import pytest
from exosphere_server.engine.graph_shape import GraphShape, GraphStructureError, analyse_graph
from exospherehost.models import GraphNodeModel, StoreConfigModel, UnitesModel


def node(identifier: str, *next_nodes: str, unites: str | None = None, **inputs: str) -> GraphNodeModel:
    return GraphNodeModel(
        node_name=identifier.capitalize(),
        namespace="demo",
        identifier=identifier,
        inputs=inputs,
        next_nodes=list(next_nodes),
        unites=UnitesModel(identifier=unites) if unites else None,
    )


def analyse(*nodes: GraphNodeModel, store: StoreConfigModel | None = None, secrets=None) -> GraphShape:
    return analyse_graph(list(nodes), store or StoreConfigModel(), secrets or {})


def errors_of(*nodes: GraphNodeModel, store: StoreConfigModel | None = None, secrets=None) -> list[str]:
    with pytest.raises(GraphStructureError) as caught:
        analyse(*nodes, store=store, secrets=secrets)
    return caught.value.errors


def test_chain_has_root_and_ancestors():
    shape = analyse(node("a", "b"), node("b", "c"), node("c"))
    assert shape.root == "a"
    assert shape.ancestors == {"a": frozenset(), "b": {"a"}, "c": {"a", "b"}}
    assert shape.unite_nodes == ()
    assert set(shape.nodes) == {"a", "b", "c"}


def test_ancestors_do_not_depend_on_the_order_nodes_are_listed_in():
    # Listed out of order: the ancestor sets are built in topological order, not in list order.
    # `b` is reached from `a` and from `c`, so only what is common to both paths is its ancestor.
    shape = analyse(node("d"), node("a", "c", "b"), node("b", "d"), node("c", "b"))
    assert shape.root == "a"
    assert shape.ancestors == {"a": frozenset(), "c": {"a"}, "b": {"a"}, "d": {"a", "b"}}


def test_node_may_read_outputs_of_any_ancestor():
    shape = analyse(node("a", "b"), node("b", "c"), node("c", x="${{ a.outputs.v }}-${{ b.outputs.w }}"))
    assert shape.root == "a"


def test_join_without_unites_rejects_output_of_one_branch():
    errors = errors_of(
        node("a", "b", "c"), node("b", "j"), node("c", "j"), node("j", x="${{ b.outputs.v }}", y="${{ a.outputs.v }}")
    )
    assert errors == ["Input 'x' of node 'j' depends on 'b' but 'b' is not an ancestor of 'j' on every path"]


def test_join_without_unites_sees_only_common_ancestors():
    shape = analyse(node("a", "b", "c"), node("b", "j"), node("c", "j"), node("j"))
    assert shape.ancestors["j"] == {"a"}


def test_unite_node_reads_its_target_and_target_ancestors_but_not_the_branches():
    shape = analyse(
        node("a", "split"), node("split", "b", "c"), node("b", "sum"), node("c", "sum"), node("sum", unites="split")
    )
    assert shape.ancestors["sum"] == {"a", "split"}
    assert shape.unite_nodes == ("sum",)
    errors = errors_of(node("split", "b"), node("b", "sum"), node("sum", unites="split", x="${{ b.outputs.v }}"))
    assert errors == ["Input 'x' of node 'sum' depends on 'b' but 'b' is not an ancestor of 'sum' on every path"]


def test_children_of_a_unite_node_may_read_its_outputs():
    shape = analyse(
        node("split", "b"),
        node("b", "sum"),
        node("sum", "report", unites="split"),
        node("report", total="${{ sum.outputs.total }}"),
    )
    assert shape.ancestors["report"] == {"split", "sum"}


def test_uniting_on_the_direct_predecessor_is_accepted():
    shape = analyse(node("a", "b"), node("b", unites="a", x="${{ a.outputs.v }}"))
    assert shape.ancestors["b"] == {"a"}


def test_unite_target_must_be_an_ancestor_of_every_predecessor():
    errors = errors_of(node("a", "b", "c"), node("b", "u"), node("c", "u"), node("u", unites="b"))
    assert errors == ["Node 'u' unites 'b' but 'b' is not an ancestor of its predecessor 'c'"]


def test_unite_target_below_the_unite_node_is_rejected():
    errors = errors_of(node("a", "u"), node("u", "z", unites="z"), node("z"))
    assert errors == ["Node 'u' unites 'z' but 'z' is not an ancestor of its predecessor 'a'"]


def test_unite_node_without_incoming_edge_is_rejected():
    errors = errors_of(node("a", "b"), node("b"), node("u", unites="a"))
    assert errors == ["Node 'u' has unites but no node lists it in next_nodes, so it never runs"]


def test_unites_must_name_another_existing_node():
    errors = errors_of(node("a", "b", "c"), node("b", unites="nope"), node("c", unites="c"))
    assert "Node 'b': unites.identifier 'nope' does not exist in the graph" in errors
    assert "Node 'c': unites.identifier cannot be the node itself" in errors


def test_duplicate_identifiers_are_rejected():
    assert errors_of(node("a", "b"), node("b"), node("b")) == ["Node identifier 'b' is not unique"]


def test_next_nodes_must_exist():
    assert errors_of(node("a", "ghost")) == ["Node 'a': next_nodes entry 'ghost' does not exist in the graph"]


def test_exactly_one_root_is_required():
    errors = errors_of(node("a", "c"), node("b", "c"), node("c"))
    assert errors == [
        "There should be exactly one root node in the graph but found 2 nodes with zero in-degree: 'a', 'b'"
    ]


def test_empty_graph_is_rejected():
    assert errors_of() == ["The graph has no nodes"]


def test_cycle_reports_its_nodes():
    errors = errors_of(node("a", "b"), node("b", "c"), node("c", "d", "b"), node("d"))
    assert errors == ["Nodes 'b', 'c' form a cycle through next_nodes"]


def test_self_loop_is_a_cycle():
    assert errors_of(node("a", "b"), node("b", "b")) == ["Node 'b' lists itself in next_nodes (a cycle)"]


def test_graph_that_is_one_big_cycle_has_no_root():
    errors = errors_of(node("a", "b"), node("b", "a"))
    assert errors == [
        "There should be exactly one root node in the graph but found 0 nodes with zero in-degree",
        "Nodes 'a', 'b' form a cycle through next_nodes",
    ]


def test_nodes_behind_a_cycle_are_not_reported_twice():
    errors = errors_of(node("a", "b"), node("b", "c"), node("c", "b", "d"), node("d", x="${{ a.outputs.v }}"))
    assert errors == ["Nodes 'b', 'c' form a cycle through next_nodes"]


def test_every_problem_is_listed_not_only_the_first_group():
    errors = errors_of(
        node("a", "b", "ghost", x="${{ store.missing }}"),
        node("b", y="${{ b.outputs.v }}", z="${{ oops }}"),
        node("b"),
        secrets={" ": "v"},
    )
    assert errors == [
        "Node identifier 'b' is not unique",
        "Node 'a': next_nodes entry 'ghost' does not exist in the graph",
        (
            "Input 'x' of node 'a' reads store key 'missing' which is neither in store_config.required_keys"
            " nor in store_config.default_values"
        ),
        "Input 'y' of node 'b' reads its own output 'b.outputs.v'",
        (
            "Input 'z' of node 'b' is invalid: Invalid syntax string placeholder '${{ oops }}' in '${{ oops }}': "
            "expected '${{ <node>.outputs.<field> }}' or '${{ store.<key> }}'"
        ),
        "Secret names cannot be empty",
    ]
    with pytest.raises(GraphStructureError) as caught:
        analyse(node("a", "ghost"), node("a"))
    assert str(caught.value) == (
        "Node identifier 'a' is not unique; Node 'a': next_nodes entry 'ghost' does not exist in the graph"
    )


def test_root_may_only_use_store_placeholders():
    store = StoreConfigModel(required_keys=["k"], default_values={"d": "1"})
    analyse(node("a", "b", x="${{ store.k }}", y="${{ store.d }}"), node("b"), store=store)
    errors = errors_of(node("a", "b", x="${{ b.outputs.v }}"), node("b"))
    assert errors == ["Input 'x' of node 'a' reads 'b.outputs.v' but the root node can only use store placeholders"]


def test_placeholder_must_name_an_existing_node():
    errors = errors_of(node("a", "b"), node("b", x="${{ nope.outputs.v }}"))
    assert errors == ["Input 'x' of node 'b' depends on 'nope' but 'nope' is not a node of the graph"]


def test_unclosed_placeholder_names_node_and_input():
    errors = errors_of(node("a", "b"), node("b", x="${{ a.outputs.v"))
    assert errors == [
        "Input 'x' of node 'b' is invalid: Placeholder '${{ a.outputs.v' in '${{ a.outputs.v' is not closed"
    ]


def test_descendant_output_cannot_be_read():
    errors = errors_of(node("a", "b"), node("b", "c", x="${{ c.outputs.v }}"), node("c"))
    assert errors == ["Input 'x' of node 'b' depends on 'c' but 'c' is not an ancestor of 'b' on every path"]


def test_unreachable_nodes_are_reported():
    errors = errors_of(node("a", "b"), node("b"), node("u", unites="a"), node("v", "w", unites="a"), node("w"))
    assert "Node 'w' is not reachable from the root node" in errors


def test_empty_secret_values_are_accepted():
    analyse(node("a"), secrets={"key": ""})


def test_structure_error_is_a_value_error():
    assert issubclass(GraphStructureError, ValueError)


def test_states_carry_only_what_nodes_further_on_read_of_their_ancestors():
    # a -> b -> c -> d; d reads a.v and b.w, c reads b.w: b-states carry a.v, c-states carry a.v and b.w.
    shape = analyse(
        node("a", "b"),
        node("b", "c"),
        node("c", "d", x="${{ b.outputs.w }}"),
        node("d", x="${{ a.outputs.v }}", y="${{ b.outputs.w }}"),
    )
    assert shape.carried == {"b": {"a": ("v",)}, "c": {"a": ("v",), "b": ("w",)}}
    assert shape.unite_targets == frozenset()


def test_what_a_unite_reads_is_carried_by_its_target_and_every_branch_in_between():
    # a -> s -> (w1, w2) -> u (unites s, reads a.v); u -> after (reads a.v and s.i).
    shape = analyse(
        node("a", "s"),
        node("s", "w1", "w2"),
        node("w1", "u"),
        node("w2", "u"),
        node("u", "after", unites="s", x="${{ a.outputs.v }}"),
        node("after", x="${{ a.outputs.v }}", y="${{ s.outputs.i }}"),
    )
    assert shape.unite_targets == {"s"}
    assert shape.carried["s"] == {"a": ("v",)}  # the unite state is made from the s state
    assert shape.carried["u"] == {"a": ("v",), "s": ("i",)}  # what `after` reads, made from the u state
    assert shape.carried["w1"] == shape.carried["w2"] == {"a": ("v",), "s": ("i",)}
