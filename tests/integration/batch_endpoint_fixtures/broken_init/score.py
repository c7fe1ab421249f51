"""init() fails the way a scoring script with a corrupt model does."""


def init():
    raise ValueError("model folder is corrupt")


def run(mini_batch):
    return mini_batch
