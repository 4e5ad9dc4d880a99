"""Finding the passages that answer: loading and chunking documents, the index, hybrid search, and the documents
the owner changes while the assistant serves."""
