"""Faithful fake provider servers: each validates requests like the real API and
answers in the provider's own wire format, with failure modes chosen by model name."""
