"""Toy app: queue triggers (one that works, one that always fails)."""

from __future__ import annotations

import azure.functions as func
from record import record

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="%WORK_QUEUE%-out", connection="AzureWebJobsStorage")
def on_message(msg: func.QueueMessage, out: func.Out[str]) -> None:
    record(
        "on_message",
        body=msg.get_body().decode(),
        id=msg.id,
        dequeue_count=msg.dequeue_count,
        inserted=msg.insertion_time,
        expires=msg.expiration_time,
        pop_receipt=msg.pop_receipt,
    )
    out.set("done:" + msg.get_body().decode())


@app.queue_trigger(arg_name="msg", queue_name="%BAD_QUEUE%", connection="AzureWebJobsStorage")
async def always_fails(msg: func.QueueMessage) -> None:
    record("always_fails", body=msg.get_body().decode(), dequeue_count=msg.dequeue_count)
    raise ValueError("this message is never good enough")
