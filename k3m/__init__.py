"""K3M: knowledge-perceived multi-modal pretraining, embeddings, queries and evaluation."""
