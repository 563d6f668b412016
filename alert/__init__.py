"""Alerts on new stories: saved searches ("watches") matched against the deduplicated stream.

- ``store``: watches and the once-per-story alert records, in Elasticsearch.
- ``matcher``: which watches an article matches (in process, or the percolator).
- ``planner``: which alerts an article calls for (pure: new story, story update).
- ``stage``: the alert stage (deduped articles → alerts topic).
- ``webhook``: the webhook stage (alerts topic → signed POSTs to the watches' URLs).
"""
