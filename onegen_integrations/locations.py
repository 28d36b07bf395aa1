"""Where documents live by default: the embedded Chroma database, its collection, its file.

Kept apart from `store` so that the command line can name them without importing chromadb.
"""

DEFAULT_PATH = ".onegen/chroma"
"""The embedded database directory `ChromaDocumentStore` and `onegen index` use by default."""
DEFAULT_COLLECTION = "onegen"
"""The collection used when none is named."""
SQLITE_FILE = "chroma.sqlite3"
"""The file every embedded Chroma database directory holds."""
