"""Workload queue depth: server adapters, discovery, scraping, push."""
