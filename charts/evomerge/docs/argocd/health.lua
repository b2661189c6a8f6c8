-- Argo CD health of evomerge resources (MergeSearch, MergedModel, Expert): read the standard conditions.
-- Install: resource.customizations.health.evomerge.dev_MergeSearch (and _MergedModel, _Expert) in argocd-cm.
local hs = {status = "Progressing", message = "waiting for the evomerge operator"}
if obj.status == nil then
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
if obj.status.phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
  return hs
end
local conditions = obj.status.conditions or {}
for _, c in ipairs(conditions) do
  if c.type == "Degraded" and c.status == "True" then
    hs.status = "Degraded"
    hs.message = c.reason .. ": " .. (c.message or "")
    return hs
  end
end
for _, c in ipairs(conditions) do
  if c.type == "Ready" then
    if c.status == "True" then
      hs.status = "Healthy"
    end
    hs.message = c.message or c.reason
  end
end
return hs
