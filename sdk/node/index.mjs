// ES module entry: the classes come from index.cjs, so code that imports
// and code that requires @credlet/client share them.
import credlet from './index.cjs';

export const {
  Client,
  Credential,
  CredletError,
  ForbiddenError,
  NotFoundError,
  NotReadyError,
  BadRequestError,
  UnavailableError,
  DEFAULT_SOCKET,
} = credlet;
