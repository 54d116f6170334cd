"""README "Run the encoder on a camera topic" → **Here**, run as written: every line of its bash block (the
`export`s apply to every process, `.venv/bin/X` is this environment's console script X, as `ros2 run` would start
it), plus the "Subscribing" example as a script. The bundled bag is played into them; at least 95 % of the played
frames must come back as latents on the topic the README's latent_decoder listens to, and latent_decoder must
publish reconstructions. When the README changes, this test follows it (it reads the block, never a copy).
Old README: latents went to /latent while the decoder listened on /camera/latent (0 reconstructions), and default
Fast DDS lost ~40 % of the raw frames."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from ros_helpers import BIN, REPO, TestGraph, stamp_of, wait_for

MIN_FRACTION = 0.95
SECTION = "## Run the encoder on a camera topic"


def live_block() -> tuple[dict[str, str], list[list[str]]]:
    """(exported variables, one argv per other line) of the README's **Here** block, comments dropped."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION):]
    block = re.search(r"\*\*Here\*\*.*?```bash\n(.*?)```", section, re.S).group(1)
    exports, commands = {}, []
    for line in block.splitlines():
        argv = shlex.split(line, comments=True)
        if not argv:
            continue
        if argv[0] == "export":
            for assignment in argv[1:]:
                name, _, value = assignment.partition("=")
                exports[name] = value
            continue
        if argv[0].startswith(".venv/bin/"):
            argv[0] = str(BIN / argv[0][len(".venv/bin/"):])
        commands.append(argv)
    return exports, commands


def subscribing_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Subscribing"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_block_is_what_this_test_expects():
    exports, commands = live_block()
    assert exports.get("FASTDDS_BUILTIN_TRANSPORTS") == "LARGE_DATA"
    names = [os.path.basename(argv[0]) for argv in commands]
    assert {"tinyvae_encoder", "latent_decoder", "sage-ros"} <= set(names), names
    decoder = commands[names.index("latent_decoder")]
    assert "latent_topics:=[/camera/latent]" in decoder


def played_frames(argv: list[str]) -> tuple[str, int]:
    """(topic, frames) the bag play line publishes, from the bag itself."""
    from sage_ros.bag.common import open_reader

    bag = REPO / argv[argv.index("play") + 1]
    topic = argv[argv.index("--topics") + 1]
    reader = open_reader(bag)
    try:
        return topic, sum(1 for c, _, _ in reader.messages() if c.topic == topic)
    finally:
        reader.close()


def test_readme_live_block_delivers_latents_and_reconstructions(tmp_path, monkeypatch):
    if not (REPO / "data_cache" / "bags" / "vtest").is_dir():
        pytest.skip("the bundled bag is missing (run `make data`)")
    exports, commands = live_block()
    decoder_topic = re.search(r"latent_topics:=\[([^\]]+)\]", " ".join(
        next(argv for argv in commands if argv[0].endswith("latent_decoder")))).group(1)
    recon_topic = decoder_topic.rsplit("/", 1)[0] + "/reconstruction"
    play = next(argv for argv in commands if "play" in argv)
    camera_topic, frames = played_frames(play)
    # a DDS domain of its own: the README's absolute topic names must not meet another test's nodes
    domain = str(150 + os.getpid() % 70)
    env = dict(os.environ, **exports, ROS_DOMAIN_ID=domain, PYTHONUNBUFFERED="1",
               RCUTILS_LOGGING_BUFFERED_STREAM="0")
    # Discovery stays on the suite's LOCALHOST setting (test/conftest.py), as in every DDS test here: multicast
    # discovery in this container sometimes never matched the player with the encoder (0 latents, both processes
    # up). rmw_fastrtps then picks the transports itself, so the `export` has no effect in this test.
    for name, value in (*exports.items(), ("ROS_DOMAIN_ID", domain)):
        monkeypatch.setenv(name, value)  # the observer below is one more participant: same transports, same domain
    graph = TestGraph("readme_observer")
    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    latents = graph.collect(Image, decoder_topic, reliable)
    from diagnostic_msgs.msg import DiagnosticArray
    diagnostics = graph.collect(DiagnosticArray, "/diagnostics", 50)
    recons = graph.collect(Image, recon_topic, reliable)
    example = tmp_path / "downstream.py"
    example.write_text(subscribing_example())
    processes = []

    def start(argv, name):
        log = open(tmp_path / f"{name}.log", "wb")
        processes.append((subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        return tmp_path / f"{name}.log"

    logs = {}
    try:
        for i, argv in enumerate(commands):
            if argv is not play:
                logs[f"{i}_{os.path.basename(argv[0])}"] = start(argv, f"{i}_{os.path.basename(argv[0])}")
        encoders = [log for name, log in logs.items() if name.endswith("_encoder")]
        wait_for(lambda: all("backend warm" in log.read_text(errors="replace") for log in encoders), 180,
                 what="encoders warm")
        # the encoder and the decoder are on the graph before the bag plays; the bag line itself waits until a
        # subscriber has matched it (--wait-for-subscribers 1): that is the encoder, as the Subscribing example
        # (another camera subscriber) starts once the player runs, as a later terminal would
        wait_for(lambda: graph.node.count_subscribers(camera_topic) >= 1
                 and graph.node.count_subscribers(decoder_topic) >= 2
                 and graph.node.count_publishers(decoder_topic) >= 1, 120, what="the graph connected")
        player_log = open(tmp_path / "play.log", "w+")
        player = subprocess.Popen(play, cwd=REPO, env=env, stdout=player_log, stderr=subprocess.STDOUT, text=True)
        encoder_log = next(log for name, log in logs.items() if name.endswith("tinyvae_encoder"))
        wait_for(lambda: "publisher connected" in encoder_log.read_text(errors="replace"), 60,
                 what="the player matched with the encoder")
        logs["example"] = start([sys.executable, str(example)], "example")
        wait_for(lambda: "played " in (tmp_path / "play.log").read_text() or player.poll() is not None, 240,
                 what="the bag played")
        try:  # the summary is printed at the end; exit follows (it once hung in DDS teardown: not what is tested)
            assert player.wait(timeout=30) == 0, (tmp_path / "play.log").read_text()
        except subprocess.TimeoutExpired:
            print("note: `sage-ros bag play` printed its summary but had not exited 30 s later; killed")
            player.kill()
            player.wait(timeout=10)
        player_log.close()
        assert f"played {frames} messages" in (tmp_path / "play.log").read_text()

        def stamps():
            with graph.lock:
                return {stamp_of(msg) for msg in latents}
        # every latent the encoder will publish arrives within a few seconds after the last frame
        settled, last = time.monotonic(), -1
        while time.monotonic() - settled < 5.0:
            count = len(stamps())
            if count != last:
                settled, last = time.monotonic(), count
            time.sleep(0.5)
        got = len(stamps())
        wait_for(lambda: len(recons) > 0, 30, what="reconstructions from latent_decoder")
        encoder_counts = {}
        with graph.lock:
            for array in diagnostics:
                for status in array.status:
                    if status.name.startswith("/tinyvae_encoder"):
                        encoder_counts = {kv.key: kv.value for kv in status.values}
        encoder_counts = {k: encoder_counts.get(k) for k in ("frames_received", "frames_published", "dropped_frames",
                                                             "lost_frames")}
        example_lines = re.findall(r"decoded \(\d+, \d+, 3\)", logs["example"].read_text(errors="replace"))
        print(f"README live block: {got}/{frames} played frames gave latents on {decoder_topic}; "
              f"{len(recons)} reconstructions on {recon_topic}; the Subscribing example decoded "
              f"{len(example_lines)} paired frames; encoder diagnostics {encoder_counts}")
        assert got >= MIN_FRACTION * frames, f"{got}/{frames} latents"
        assert example_lines, logs["example"].read_text(errors="replace")
        for process, _ in processes:
            assert process.poll() is None, "a README process died"
    finally:
        for process, log in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, log in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            log.close()
        graph.close()
