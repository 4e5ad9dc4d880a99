"""One chat turn: the prompt contract, the model's answer checked against the documents (facts, claims, output
guard), the reply, admission and opening hours."""
