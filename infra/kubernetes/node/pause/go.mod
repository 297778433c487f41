module llm-optimizer.local/pause

go 1.22
