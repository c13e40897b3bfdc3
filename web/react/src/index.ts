export { RealtimeProvider, useRealtime, useRealtimeEvent, typeMatches, PublishError } from './provider.js';
export type { RealtimeProviderProps, RealtimeContextValue, PublishBody, ClientOptions } from './provider.js';
export {
  useRealtimeApprovals,
  useRealtimeAgents,
  useRealtimeNotifications,
  useRealtimeChat,
  approvalsReducer,
  agentsReducer,
  notificationsReducer,
  chatReducer,
  patchQuery,
} from './hooks.js';
export type {
  Approval,
  AgentState,
  AgentStatus,
  Notification,
  ChatMessage,
  RealtimeQueryOptions,
  RealtimeNotifications,
  RealtimeChat,
  ChatOptions,
} from './hooks.js';
export { ConnectionStatus, useConnectionView, defaultConnectionLabels } from './status.js';
export type { ConnectionStatusProps, ConnectionView, ConnectionLabels } from './status.js';
export { useOptimisticEvent, RollbackError } from './optimistic.js';
export type { OptimisticEventOptions } from './optimistic.js';
export { defaultQueryKeys } from './keys.js';
export type { QueryKeys } from './keys.js';
export { connect, newCorrelationId } from '../../realtime.js';
export type { Status, RealtimeEvent, EphemeralEvent, ResetInfo, ConnectOptions, Connection } from '../../realtime.js';
