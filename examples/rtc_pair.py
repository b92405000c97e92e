"""A socker server and Python client opening WebRTC DataChannels (docs/rtc.md).

Run: python examples/rtc_pair.py
"""

import asyncio

import aiosocker
from aiosocker.rtc import ChannelSpec, RtcSession, client_stages, server_stages

CHANNELS = [
    ChannelSpec("game"),  # unordered, never retransmitted: UDP-like
    ChannelSpec("chat", ordered=True, max_retransmits=None),  # ordered and reliable
]


async def server_setup(conn: aiosocker.Connection) -> None:
    @conn.stage(timeout=10)
    async def hello(message: bytes) -> bool:
        await conn.send(b"scene: 2 players, 1 crate")
        return True

    rtc = server_stages(conn, channels=CHANNELS)  # rtc_ready, rtc_answer, rtc_open

    @rtc.on_message("game")
    def game(message: bytes) -> None:
        rtc.send(b"ack " + message, "game")

    @rtc.on_message("chat")
    def chat(message: bytes) -> None:
        rtc.send(b"server heard: " + message, "chat")

    @rtc.on_open
    async def opened(session: RtcSession) -> None:
        await conn.send(b"channels open")  # on the WebSocket, to the client's final stage

    @conn.stage()
    def control(message: bytes) -> bool:  # the final stage: reliable control messages
        print("server control:", message)
        return False


async def client(url: str) -> None:
    replied = asyncio.Event()
    async with aiosocker.connect(url) as conn:

        @conn.stage()
        async def scene(message: bytes) -> bool:
            print("client scene:", message)
            await rtc.ready()  # the scene is built: ask for the offer
            return True

        rtc = client_stages(conn)  # rtc_offer, rtc_open; the offer names the channels

        @rtc.on_message("game")
        def game(message: bytes) -> None:
            print("client game:", message)

        @rtc.on_message("chat")
        def chat(message: bytes) -> None:
            print("client chat:", message)
            replied.set()

        @rtc.on_open
        def opened(session: RtcSession) -> None:
            for i in range(3):
                session.send(b"move %d" % i, "game")  # these three travel in one frame
            session.send(b"hello from the client", "chat")

        @rtc.on_close
        async def lost(session: RtcSession) -> None:
            await session.renegotiate()  # a channel died: start over

        @conn.stage()
        def control(message: bytes) -> bool:
            print("client control:", message)
            return False

        await conn.send(b"hello")
        await asyncio.wait_for(replied.wait(), 5)
        await conn.send(b"bye")
        print("client stages:", [entry.stage for entry in conn.stages.history])


async def main() -> None:
    async with aiosocker.serve(server_setup, port=0) as server:
        await client(server.url)


asyncio.run(main())
