"""kit: a domain chatbot starter kit — a small tuned model with retrieval, on your own data."""

__version__ = "0.1.0"
