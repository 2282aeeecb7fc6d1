"""Document parsers: bytes + media type -> Markdown (the ``Parser`` port), and their safeguards.

- ``detect.detect_media_type``: the media type from content (magic bytes, ZIP parts, text sniffing).
- ``local.LocalParser``: PDF, DOCX, PPTX, XLSX, HTML, Markdown, text, CSV and JSON, offline.
- ``validate.validate_parsed``: is the parsed text fit to chunk (empty, garbage, too large)?
- ``isolation.parse_isolated``: parse in a pooled child process with a time and memory limit.

Submodules are imported on demand so that importing the package stays cheap.
"""
