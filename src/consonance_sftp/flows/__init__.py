"""Business rules of each exchange (production, onix_feed, intake, finance, sales_in, marketing,
formats, archive), written against ports only.
"""
