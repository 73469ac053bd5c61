using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using OrasStaging.Oci;

namespace OrasStaging.Commands.Completion;

/// <summary>
/// Lists a repository's tags (<c>GET /v2/&lt;name&gt;/tags/list</c>, following <c>Link: rel="next"</c>) through the
/// pull client's transport, so the scheme rules, redirects and the Bearer/Basic handshake are the same as for a
/// pull. Completion stays anonymous: a Tab press must never run a docker credential helper.
/// </summary>
internal static class RegistryTagLister
{
    private const int MaxBodyBytes = 1 << 20;
    private const int MaxPages = 5;

    private static readonly Regex NextLink = new(
        "<([^>]+)>\\s*;\\s*rel=\"?next\"?", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase);

    public static async Task<IReadOnlyList<string>> ListTagsAsync(TagQuery query, CancellationToken ct)
    {
        if (!ImageReference.TryParse(query.Prefix + ":latest", out var reference, out _) || reference is null)
        {
            return Array.Empty<string>();
        }

        var transport = new RegistryTransport(
            new RegistryOptions { MaximumRetryCount = 0, Anonymous = true, CacheServer = string.Empty },
            NullOperationSink.Instance);
        var tags = new List<string>();
        Uri? next = transport.RegistryUri(reference.Registry, $"/v2/{reference.Repository}/tags/list");
        for (int page = 0; page < MaxPages && next is not null; page++)
        {
            var request = new RegistryRequest(HttpMethod.Get, next, reference.Registry, reference.Repository, "the tag list")
            {
                Accept = new[] { "application/json" },
                RetryTransient = false,
            };
            using var response = await transport.SendAsync(request, ct).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                break;
            }

            byte[] body = await RegistryTransport.ReadCappedAsync(response.Content, MaxBodyBytes, "the tag list", ct)
                .ConfigureAwait(false);
            using var json = JsonDocument.Parse(body);
            if (json.RootElement.TryGetProperty("tags", out var list) && list.ValueKind == JsonValueKind.Array)
            {
                tags.AddRange(list.EnumerateArray()
                    .Where(t => t.ValueKind == JsonValueKind.String)
                    .Select(t => t.GetString()!));
            }

            next = NextPage(response, next);
        }

        return tags;
    }

    private static Uri? NextPage(HttpResponseMessage response, Uri current)
    {
        if (!response.Headers.TryGetValues("Link", out var links))
        {
            return null;
        }

        foreach (string link in links)
        {
            var match = NextLink.Match(link);
            if (match.Success && Uri.TryCreate(current, match.Groups[1].Value, out var next)
                && next.Host == current.Host && next.Port == current.Port)
            {
                return next;
            }
        }

        return null;
    }
}
