"""Local emulator of an Azure ML batch endpoint (scoring URI + job tracking) backed by Azurite.

See docs/batch-endpoint-emulator.md and shared/design/azureml-batch-endpoint.md for the contract.
"""
