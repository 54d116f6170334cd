"""Names as the graph sees them: where a node's outputs go (beside the resolved input), and a check that says,
after a few seconds, which subscribed topic has no publisher and which similar topics of the same type exist.

A mistyped remap (`-r image:=/camera/imag_raw`) otherwise looks like a quiet camera: the node waits forever.
"""
from __future__ import annotations

import difflib
import time
from typing import Callable

from sage_ros.ros import params as P

NO_PUBLISHER_GRACE_S = 5.0  # a topic with no publisher this long after subscribing is reported
REPEAT_S = 60.0             # and reported again this often while it lasts


def output_beside(node, input_topic: str, name: str, compressed: bool = False) -> str:
    """The topic an output `name` (latent, puzzle, reconstruction, ...) of `input_topic` is published on.

    Outputs live beside the input as the graph resolves it (remaps and namespace applied): `-r
    image:=/camera/image_raw` puts `latent` on /camera/latent, as `image_topics:=[/camera/image_raw]` does. An
    explicit remap of the output itself (`-r latent:=/x`) still wins: then the relative name is returned and the
    publisher's own remapping moves it. `compressed`: input_topic is `<image>/compressed`; outputs go beside <image>.
    """
    image = input_topic[:-len("/compressed")] if compressed and input_topic.endswith("/compressed") else input_topic
    relative = P.output_namespace(image) + name
    try:
        if node.resolve_topic_name(relative) != node.resolve_topic_name(relative, only_expand=True):
            return relative  # the user remapped this output: honour it
        resolved = node.resolve_topic_name(input_topic)
        if compressed and resolved.endswith("/compressed"):
            resolved = resolved[:-len("/compressed")]
        return P.output_namespace(resolved) + name
    except Exception:  # noqa: BLE001 - an unresolvable name: keep the old, relative rule
        return relative


def close_matches(topic: str, type_name: str, graph: list[tuple[str, list[str]]], n: int = 3,
                  exclude: frozenset = frozenset()) -> list[str]:
    """Topics of `type_name` on the graph whose names are close to `topic` (difflib ratio >= 0.6), except `exclude`
    (the node's own outputs)."""
    same_type = [name for name, types in graph if type_name in types and name != topic and name not in exclude]
    return difflib.get_close_matches(topic, same_type, n=n, cutoff=0.6)


class PublisherCheck:
    """Reports subscribed topics that still have no publisher NO_PUBLISHER_GRACE_S after `start()`.

    `poll()` (from a timer) logs one WARN per such topic (again every REPEAT_S) naming the resolved topic and the
    close matches of the same type; `missing` holds the current findings for /diagnostics."""

    def __init__(self, node, topics: list[tuple[str, str]], clock: Callable[[], float] = time.monotonic,
                 what: str = "input", exclude=()):
        self._node, self._topics, self._clock, self._what = node, list(topics), clock, what
        self._exclude = frozenset(exclude)
        self._since = clock()
        self._reported: dict[str, float] = {}
        self.missing: dict[str, list[str]] = {}

    def poll(self, received: Callable[[str], bool] = lambda topic: False) -> dict[str, list[str]]:
        now = self._clock()
        if now - self._since < NO_PUBLISHER_GRACE_S:
            return self.missing
        found: dict[str, list[str]] = {}
        graph = None
        for topic, type_name in self._topics:
            try:
                if self._node.count_publishers(topic) > 0 or received(topic):
                    continue
                if graph is None:
                    graph = self._node.get_topic_names_and_types()
            except Exception:  # noqa: BLE001 - the node is shutting down
                return self.missing
            found[topic] = close_matches(topic, type_name, graph, exclude=self._exclude)
            if now - self._reported.get(topic, -1e18) >= REPEAT_S:
                self._reported[topic] = now
                self._node.get_logger().warning(describe_missing(topic, type_name, found[topic], self._what,
                                                                 now - self._since))
        self.missing = found
        return found


def describe_missing(topic: str, type_name: str, matches: list[str], what: str, waited: float) -> str:
    hint = (f"; topics of the same type with similar names: {', '.join(matches)} (check the remap / parameter)"
            if matches else f"; no similar {type_name} topic exists (is the {'camera' if what == 'input' else 'encoder'}"
            " running, on this ROS_DOMAIN_ID?)")
    return f"no publisher on {what} topic '{topic}' ({type_name}) after {waited:.0f} s{hint}"
