"""The KPIs of consignment per channel and overall, with server-drawn SVG charts."""
