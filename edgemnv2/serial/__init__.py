"""On-device timing over a serial link: protocol, transport, host streamer, board engine, virtual board.

`protocol.py` and `board.py` are self-contained (stdlib + numpy): they are copied next to
`firmware_templates/linux-agent/agent.py` on a Linux board, which has no edgemnv2 installed.
"""

from __future__ import annotations

from pathlib import Path

from edgemnv2.resources import templates_root

SERIAL_DIR = Path(__file__).resolve().parent


def agent_files() -> dict[str, Path]:
    """Files a Linux board needs, by the name they must have there: agent.py, protocol.py, board.py."""
    return {
        "agent.py": templates_root() / "linux-agent" / "agent.py",
        "protocol.py": SERIAL_DIR / "protocol.py",
        "board.py": SERIAL_DIR / "board.py",
    }
