"""Index: write deduplicated articles and their stories to Elasticsearch (the index stage),
set the indices up, and search them (the search service, its API routes and web page).
Imports only the kernel."""
