"""Training text and its tokens: documents from "stdlib", text, JSON-lines or Parquet files (``sources``), a
tokenizer (``tokenizer``), the corpus as token ids named by content (``tokens``, ``shards``, ``prepare``) and each
node's stream of windows (``stream``)."""
