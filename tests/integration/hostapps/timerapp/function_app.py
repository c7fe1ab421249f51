"""Toy app: timer triggers (even seconds, run on startup, a slow one that must not overlap)."""

from __future__ import annotations

import asyncio
import time

import azure.functions as func
from record import record

app = func.FunctionApp()


@app.timer_trigger(arg_name="timer", schedule="*/2 * * * * *")
def every_two(timer: func.TimerRequest) -> None:
    record("every_two", past_due=timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True, use_monitor=False)
async def on_startup(timer: func.TimerRequest) -> None:
    await asyncio.sleep(0)
    record("on_startup", past_due=timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="* * * * * *")
def slow(timer: func.TimerRequest) -> None:
    started = time.time()
    record("slow_start", started=started)
    time.sleep(2.2)
    record("slow", started=started, ended=time.time())


@app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", use_monitor=True)
def monitored(timer: func.TimerRequest) -> None:
    record("monitored", past_due=timer.past_due)
