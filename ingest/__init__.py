"""Ingest: discover outlets' articles (feeds, sitemaps, homepages), fetch them politely,
remember what was fetched in the crawl state, and publish raw pages. Imports only the kernel."""
