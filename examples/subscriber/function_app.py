"""Example DropScore subscriber: an Azure Functions (Python v2) app with one Event Grid trigger.

It accepts both delivery schemas: the trigger gives a func.CloudEvent for CloudEvents deliveries
and a func.EventGridEvent for Event Grid schema ones."""

from __future__ import annotations

import azure.functions as func
import dropscore_subscriber

app = func.FunctionApp()


def _type_of(event: func.CloudEvent | func.EventGridEvent) -> str:
    if isinstance(event, func.CloudEvent):
        return event.type
    return event.event_type


@app.function_name("OnDropScoreEvent")
@app.event_grid_trigger(arg_name="event")
def on_dropscore_event(event: func.CloudEvent) -> None:
    dropscore_subscriber.handle(_type_of(event), event.get_json())
