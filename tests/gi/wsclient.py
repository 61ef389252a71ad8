#!/usr/bin/python3
"""A real WebSocket client (python3-websockets) driven over stdin/stdout, for tests written in
languages without a WebSocket client of their own at hand (the GJS tests).

    wsclient.py URL [TOKEN]

It connects at once (with "Authorization: Bearer TOKEN" when given) and speaks JSON lines.
On stdout, events:
    {"event": "open"}
    {"event": "refused", "status": 401}
    {"event": "frame", "frame": {...}}          one per text frame, parsed
    {"event": "closed", "code": 1008, "reason": "spam"}
On stdin, commands:
    {"send": "<text of one frame>"}
    {"close": 1000}
It exits after "refused" or "closed", or when stdin is closed (closing the connection first).
"""

import asyncio
import json
import sys

import websockets


def emit(**event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def read_commands(ws):
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            await ws.close(1000)
            return
        command = json.loads(line)
        if "send" in command:
            await ws.send(command["send"])
        elif "close" in command:
            await ws.close(command["close"])
            return


async def main(url, token):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        ws = await websockets.connect(url, extra_headers=headers, ping_interval=None,
                                      max_size=None)
    except websockets.InvalidStatusCode as e:
        emit(event="refused", status=e.status_code)
        return
    emit(event="open")
    commands = asyncio.ensure_future(read_commands(ws))
    try:
        async for text in ws:
            emit(event="frame", frame=json.loads(text))
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    emit(event="closed", code=ws.close_code, reason=ws.close_reason)
    if not commands.done():
        commands.cancel()
    await asyncio.gather(commands, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
