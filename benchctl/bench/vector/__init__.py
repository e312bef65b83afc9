"""The vector database benchmark: data sets, the phases runner, the store APIs (``stores``) and the
``vector`` bench kind."""
