"""The one strict YAML reader for params.yaml and profiles.

PyYAML's safe loader, with what a settings file never needs taken away:
- no anchors or aliases (`&a`, `*a`): an alias bomb ("billion laughs") expands a few hundred bytes
  into gigabytes, and a shared node would merge into two places at once;
- no key written twice in one mapping (YAML says keys are unique; PyYAML keeps the last silently,
  DVC refuses the file);
- at most MAX_BYTES of text (a settings file is a few kilobytes).

Every refusal is a ParamsError-compatible `PipelineError` naming the file, the line and the key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent

from pipeline.core.errors import PipelineError

MAX_BYTES = 1 << 20   # 1 MiB: params.yaml is about 6 KB; a bigger file is not a settings file


class YamlError(PipelineError):
    """A settings file that the strict reader refuses; the message names the file, line and key."""


class _StrictLoader(yaml.SafeLoader):
    source = "<text>"

    def compose_node(self, parent, index):   # noqa: ANN001 (PyYAML's signature)
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, AliasEvent):
            raise YamlError(f"{self.source} line {line}: alias *{event.anchor} is not accepted; write the value out "
                            f"(anchors and aliases are refused in settings files)")
        if isinstance(event, (ScalarEvent, CollectionStartEvent)) and event.anchor is not None:
            raise YamlError(f"{self.source} line {line}: anchor &{event.anchor} is not accepted; write the value out "
                            f"(anchors and aliases are refused in settings files)")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):   # noqa: ANN001
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise YamlError(f"{self.source} line {key_node.start_mark.line + 1}: the merge key '<<' is not "
                                f"accepted; write the keys out")
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:
                raise YamlError(f"{self.source} line {line}: a mapping key must be a plain value, not "
                                f"{type(key).__name__}") from None
            if first is not None:
                raise YamlError(f"{self.source} line {line}: key {key!r} is written twice in one mapping (first at "
                                f"line {first}); keep one of them")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def loads(text: str, source: str = "<text>") -> Any:
    """Parse `text` strictly; `source` names it in messages."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlError(f"{source}: {len(text.encode('utf-8', 'surrogatepass'))} bytes, more than the "
                        f"{MAX_BYTES} a settings file may have")
    loader = _StrictLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise YamlError(f"{source}{where}: not valid YAML ({problem})") from None
    finally:
        loader.dispose()


def load(path: str | Path) -> Any:
    """Read the settings file `path` strictly (size checked before it is read)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlError(f"{path}: {size} bytes, more than the {MAX_BYTES} a settings file may have")
        if not path.is_file():
            raise YamlError(f"{path}: not a regular file")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise YamlError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise YamlError(f"{path}: cannot be read ({e.strerror})") from None
    return loads(text, str(path))
