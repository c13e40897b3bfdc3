import type { QueryKey } from '@tanstack/react-query';

/**
 * QueryKeys names the cache entries the hooks patch. Every realtime query
 * of a workspace should live under workspace(ws): a reset invalidates it
 * (and every key a mounted hook uses, wherever it lives).
 */
export interface QueryKeys {
  workspace(workspaceId: string): QueryKey;
  approvals(workspaceId: string): QueryKey;
  agents(workspaceId: string): QueryKey;
  notifications(workspaceId: string, userId: string): QueryKey;
  chat(workspaceId: string, chatId: string): QueryKey;
}

export const defaultQueryKeys: QueryKeys = {
  workspace: (ws) => ['realtime', ws],
  approvals: (ws) => ['realtime', ws, 'approvals'],
  agents: (ws) => ['realtime', ws, 'agents'],
  notifications: (ws, user) => ['realtime', ws, 'notifications', user],
  chat: (ws, chatId) => ['realtime', ws, 'chat', chatId],
};
