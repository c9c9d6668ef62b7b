-- Argo CD health of Switchyard's DatabaseProject, Environment and Promotion
-- (switchyard.dev/v1alpha1), from the kstatus conditions the controller writes:
-- being deleted or a generation not yet observed: Progressing; spec.suspend: Suspended;
-- Stalled=True: Degraded; Reconciling=True: Progressing; Ready=True: Healthy;
-- Ready=False waiting for a person to approve a plan (ApprovalPending, ApprovalStale):
-- Suspended; any other Ready=False: Degraded. Plain Lua 5.1, as Argo CD runs it.
local hs = {status = "Progressing", message = "Waiting for the controller"}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function said(c)
  if c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  return c.reason or ""
end

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.message = "Being deleted: the controller is releasing its finalizer"
  return hs
end
if obj.spec ~= nil and obj.spec.suspend == true then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true: nothing is deployed until it is false"
  return hs
end
if obj.status == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (obj.status.observedGeneration == nil or obj.status.observedGeneration < generation) then
  hs.message = "Generation " .. generation .. " is not observed yet"
  return hs
end

local stalled = condition("Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = said(stalled)
  return hs
end
local reconciling = condition("Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.message = said(reconciling)
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = said(ready)
elseif ready ~= nil and ready.status == "False" then
  if ready.reason == "ApprovalPending" or ready.reason == "ApprovalStale" then
    hs.status = "Suspended"
  else
    hs.status = "Degraded"
  end
  hs.message = said(ready)
end
return hs
