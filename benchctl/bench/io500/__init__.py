"""IO500: the result parser (``parse``) and the ``io500`` bench kind (``kind``)."""
