"""LLM labelling, training and applying quality/topic classifiers."""
