"""The Azure ML chat scoring contract in one place: the seed's request payload and reading the answer.

Used by the smoke test after deployment, ``autopilot invoke`` and the demo, whichever platform serves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

# Keys a chat-completion endpoint answers with: the managed endpoint's {"output": ...}, the MLflow scorer's
# {"0": ...} (one key per conversation), and the generic text fields of other servers.
_ANSWER_KEYS = ("output", "0", "generated_text", "text", "answer")


def scoring_payload(
    conversations: Sequence[Sequence[Mapping[str, str]]], parameters: Mapping[str, Any]
) -> dict[str, Any]:
    """``{"input_data": {"input_string": [conversation, ...], "parameters": {...}}, "params": {}}``."""
    return {
        "input_data": {
            "input_string": [[dict(m) for m in conversation] for conversation in conversations],
            "parameters": dict(parameters),
        },
        "params": {},
    }


def answer_text(answer: Any) -> str:
    """The generated text of a scoring answer; several answers are joined by ``---`` lines."""
    if isinstance(answer, str):
        return answer
    if isinstance(answer, dict):
        for key in _ANSWER_KEYS:
            if isinstance(answer.get(key), str):
                return str(answer[key])
    if isinstance(answer, list) and answer:
        return "\n---\n".join(answer_text(a) for a in answer)
    return json.dumps(answer, indent=2, default=str)
