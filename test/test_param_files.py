"""The shipped parameter files apply under any namespace: each node is started in a namespace with an edited copy
of its config file (same keys as shipped) and the values are read back over the get_parameters service.
A bare `node_name:` key is ignored in a namespace (checked too, so this test can tell the difference)."""
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.srv import GetParameters

from ros_helpers import REPO, NodeProcess, TestGraph

# file, executable, namespace, edited values (every one differs from the code's default)
CASES = {
    "compression": ("compression.yaml", "compression_node", "/robot1",
                    {"job_file": "jobs/other.yaml", "data_dir": "datasets", "cancel_timeout": 7.5,
                     "progress_period": 0.25}),
    "tinyvae": ("perception.yaml", "tinyvae_encoder", "/robot2/front",
                {"crop_mode": "center", "max_rate": 7.0, "qos_depth": 3, "intra_op_threads": 2,
                 "autostart": False}),
    "puzzle_root": ("perception.yaml", "puzzle_encoder", "/",
                    {"crop_mode": "letterbox", "max_rate": 2.5, "autostart": False}),
}


def edited_copy(name: str, values: dict, out: Path, key_override: str | None = None) -> Path:
    """The shipped file with `values` set under the entry that names this node (its key kept as shipped)."""
    document = yaml.safe_load((REPO / "config" / name).read_text())
    node = values.pop("__node")
    keys = [key for key in document if key.rstrip("/").split("/")[-1] == node]
    assert len(keys) == 1, f"{name}: expected one entry for the node, found {list(document)}"
    entry = document.pop(keys[0])
    entry["ros__parameters"].update(values)
    document[key_override or keys[0]] = entry
    out.write_text(yaml.safe_dump(document, sort_keys=False))
    return out


def get_parameters(graph, node: str, names: list[str]) -> dict:
    client = graph.node.create_client(GetParameters, f"{node}/get_parameters")
    try:
        response = graph.call(client, GetParameters.Request(names=names), timeout=30.0, resend_s=5)
    finally:
        graph.node.destroy_client(client)
    fields = {1: "bool_value", 2: "integer_value", 3: "double_value", 4: "string_value"}
    return {name: getattr(value, fields[value.type]) for name, value in zip(names, response.values)}


@pytest.fixture(scope="module")
def started(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("param_files")
    processes = {}
    try:
        for case, (config, executable, namespace, values) in CASES.items():
            path = edited_copy(config, {**values, "__node": executable}, tmp / f"{case}.yaml")
            processes[case] = NodeProcess(executable, ["-r", f"__ns:={namespace}", "--params-file", str(path)],
                                          tmp / f"{case}.log")
        # the old style: a bare node-name key, in a namespace
        bare = edited_copy("compression.yaml", {"cancel_timeout": 9.5, "__node": "compression_node"},
                           tmp / "bare.yaml", key_override="compression_node")
        processes["bare"] = NodeProcess("compression_node", ["-r", "__ns:=/robot3", "--params-file", str(bare)],
                                        tmp / "bare.log")
        graph = TestGraph("param_file_reader")
        try:
            yield graph, processes
        finally:
            graph.close()
    finally:
        for process in processes.values():
            process.stop()


@pytest.mark.parametrize("case", list(CASES))
def test_values_from_the_file_apply_in_a_namespace(started, case):
    graph, processes = started
    _, executable, namespace, values = CASES[case]
    node = f"{namespace.rstrip('/')}/{executable}"
    read = get_parameters(graph, node, list(values))
    assert read == values, processes[case].log()


def test_a_bare_node_name_key_is_ignored_in_a_namespace(started):
    graph, processes = started
    from sage_ros.ros.compression_node import PARAMETERS

    default = PARAMETERS["cancel_timeout"][0]
    assert default != 9.5
    assert get_parameters(graph, "/robot3/compression_node", ["cancel_timeout"]) == {"cancel_timeout": default}
