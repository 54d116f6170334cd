"""One resolver for every verb and node that takes a bundle: a shipped name, a bundle directory or a file inside
one; each wrong case gets its own clear error."""
import pytest

from sage_ros.runtime.bundle import BundleError, resolve_bundle_path


@pytest.fixture
def shipped(tmp_path):
    share = tmp_path / "share"
    for name in ("tinyvae_l64_fp32", "tinyvae_l8_fp32"):
        (share / name).mkdir(parents=True)
        (share / name / "bundle.json").write_text("{}")
        (share / name / "encoder.onnx").write_bytes(b"")
    return share


def test_a_name_a_directory_and_a_file_inside_resolve_to_the_directory(shipped, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    bundle = shipped / "tinyvae_l64_fp32"
    assert resolve_bundle_path("tinyvae_l64_fp32", [shipped]) == bundle
    assert resolve_bundle_path(str(bundle), [shipped]) == bundle
    assert resolve_bundle_path(bundle / "bundle.json", [shipped]) == bundle
    assert resolve_bundle_path(bundle / "encoder.onnx", [shipped]) == bundle
    assert resolve_bundle_path("share/tinyvae_l8_fp32", []) == shipped.relative_to(tmp_path) / "tinyvae_l8_fp32"


@pytest.mark.parametrize("given, words", [
    ("", "no bundle given"),
    ("tinyvae_l64_fp23", "did you mean tinyvae_l64_fp32"),
    ("nothing_like_it", "shipped: tinyvae_l64_fp32, tinyvae_l8_fp32"),
    ("{tmp}/share", "directory of bundles"),
    ("{tmp}/run", "training run directory"),
    ("{tmp}/plain", "not a bundle directory"),
    ("{tmp}/plain/notes.txt", "no bundle.json beside it"),
    ("{tmp}/share/tinyvae_l64_fp23", "did you mean tinyvae_l64_fp32"),
])
def test_each_wrong_case_says_what_it_is(given, words, shipped, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.json").write_text("{}")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    with pytest.raises(BundleError, match=words):
        resolve_bundle_path(given.format(tmp=tmp_path), [shipped])


def test_the_shipped_names_resolve_in_the_shipped_model_dirs():
    """The search list every caller passes: installed share/, else the checkout's models/."""
    from sage_ros.runtime.consumer import shipped_model_dirs

    path = resolve_bundle_path("tinyvae_l8_fp32", shipped_model_dirs())
    assert (path / "bundle.json").is_file() and path.name == "tinyvae_l8_fp32"


def test_the_encoder_node_and_the_cli_use_the_same_resolver(monkeypatch, shipped):
    from sage_ros.ros import cameras as encoder_node  # the node resolves its `bundle` parameter there
    from sage_ros.usage import bundle_dir

    monkeypatch.setattr(encoder_node, "shipped_model_dirs", lambda: [shipped])
    assert encoder_node.resolve_bundle("tinyvae_l8_fp32", "tinyvae") == shipped / "tinyvae_l8_fp32"
    assert encoder_node.resolve_bundle(str(shipped / "tinyvae_l8_fp32" / "bundle.json"), "tinyvae") == \
        shipped / "tinyvae_l8_fp32"
    assert bundle_dir("tinyvae_l8_fp32").name == "tinyvae_l8_fp32"  # the CLI's argparse type
