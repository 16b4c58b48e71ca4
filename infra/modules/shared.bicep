// Parsing shared by main.bicep and the modules that must agree with it.

@export()
@description('The trimmed, non-empty ids of a comma-separated list; `fallback` alone when the list is empty.')
func hubSubscriptionList(ids string, fallback string) string[] =>
  empty(idList(ids)) ? [fallback] : idList(ids)

@export()
@description('The trimmed, non-empty entries of a comma-separated list.')
func idList(ids string) string[] => filter(map(split(ids, ','), id => trim(id)), id => !empty(id))
