"""The five DRPO roles, one file each. An agent is an async function from one typed message to
another; it knows its prompt template and its messages, never the graph."""
