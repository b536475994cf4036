package client

import (
	"context"
	"net/url"
)

// GetPrevious returns the version before the current one, which the agent
// keeps as its rollback pointer after a rotation: a bot whose broker has not
// yet activated a new key can fall back to the old one during the overlap.
// It is ErrNotFound when the agent holds no previous version (before its
// first rotation since it started) or the set is unknown; the APIError's
// message says which. Every such read is audited by the agent.
func (c *Client) GetPrevious(ctx context.Context, name string) (*Credential, error) {
	var w wireCredential
	if _, err := c.retry(ctx, "/v1/credentials/"+url.PathEscape(name)+"?version=previous", &w); err != nil {
		return nil, err
	}
	return fromWire(w), nil
}
