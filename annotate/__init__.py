"""``annotate``: scanned book pages -> a labelled multimodal NER dataset, in the browser."""
