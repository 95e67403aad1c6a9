"""Verifiable-reward service: a microservice that scores LLM completions for RL."""

__version__ = "0.1.0"
