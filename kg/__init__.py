"""The product knowledge graph: RDF and Bolt/Cypher stores, graph views for learning."""
