"""The course's Python chat server, as the baseline threadchat is measured against.

It follows the `websockets` library's tutorial shape: one coroutine per
connection, a module-level registry of who is logged in, and
`websockets.broadcast` to fan each message out (it queues the same bytes on
every connection without waiting for any). The protocol is threadchat's,
which is the tutorial's: login / disconnect / chat, with the whole
`active_users` list in every presence message.

No rate limit and no per-client queue bound: like the tutorial, it trusts
its clients. Run: python python_ref.py --port 8082
"""

import argparse
import asyncio
import json

from websockets.asyncio.server import broadcast, serve

# websocket -> username, in login order (dicts keep insertion order).
USERS = {}


def active_users():
    return list(USERS.values())


def error(kind, error_text, details):
    return json.dumps(
        {"type": "error", "error": error_text, "details": details, "request": kind}
    )


async def handler(websocket):
    try:
        async for raw in websocket:
            try:
                message = json.loads(raw)
                kind = message["type"]
            except (ValueError, KeyError, TypeError):
                await websocket.send(error(None, "error decoding message", "bad JSON"))
                continue
            if kind == "login":
                name = str(message.get("username", "")).strip()
                taken = {n.lower() for ws, n in USERS.items() if ws is not websocket}
                if not 1 <= len(name) <= 32 or name.lower() in taken:
                    await websocket.send(
                        error("login", "username is taken", f"{name!r} cannot be used")
                    )
                    continue
                USERS[websocket] = name
                broadcast(
                    USERS.keys(),
                    json.dumps(
                        {"type": "login", "user_joined": name, "active_users": active_users()}
                    ),
                )
            elif kind == "disconnect":
                leave(websocket)
            elif kind == "chat" and websocket in USERS:
                message["username"] = USERS[websocket]
                broadcast(USERS.keys(), json.dumps(message))
    finally:
        leave(websocket)


def leave(websocket):
    name = USERS.pop(websocket, None)
    if name is not None:
        broadcast(
            USERS.keys(),
            json.dumps(
                {"type": "disconnect", "user_left": name, "active_users": active_users()}
            ),
        )


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    args = parser.parse_args()
    # The library's defaults, as in the tutorial.
    async with serve(handler, args.host, args.port):
        print(f"listening on ws://{args.host}:{args.port}/", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main())
