using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace OrasStaging.Commands.Completion;

/// <summary>
/// Lists a repository's tags for completion only: anonymous, or with the anonymous pull token a bearer
/// challenge offers (ghcr.io, Docker Hub). It never sends credentials, so it needs none of the credential rules of
/// the pull client; replace it with that client's tag listing once it has one.
/// </summary>
internal static class RegistryTagLister
{
    private const int MaxBodyBytes = 1 << 20;
    private const int MaxTokenBytes = 128 << 10;
    private const int MaxPages = 5;

    private static readonly HttpClient Client = new(new SocketsHttpHandler
    {
        AllowAutoRedirect = true,
        MaxAutomaticRedirections = 5,
        ConnectTimeout = TimeSpan.FromSeconds(2),
    })
    {
        Timeout = Timeout.InfiniteTimeSpan, // the caller's token bounds every request
    };

    private static readonly Regex ChallengeParameter = new(
        "(\\w+)=\"([^\"]*)\"", RegexOptions.CultureInvariant);

    private static readonly Regex NextLink = new(
        "<([^>]+)>\\s*;\\s*rel=\"?next\"?", RegexOptions.CultureInvariant | RegexOptions.IgnoreCase);

    public static async Task<IReadOnlyList<string>> ListTagsAsync(TagQuery query, CancellationToken ct)
    {
        var schemes = query.IsLoopback ? new[] { "http", "https" } : new[] { "https" };
        Exception? last = null;
        foreach (string scheme in schemes)
        {
            try
            {
                return await ListTagsAsync(new Uri($"{scheme}://{query.RegistryHost}/"), query.RegistryRepository, ct)
                    .ConfigureAwait(false);
            }
            catch (HttpRequestException ex)
            {
                last = ex;
            }
        }

        throw last ?? new InvalidOperationException("No scheme to try.");
    }

    private static async Task<IReadOnlyList<string>> ListTagsAsync(Uri registry, string repository, CancellationToken ct)
    {
        var tags = new List<string>();
        Uri? next = new(registry, $"v2/{repository}/tags/list");
        string? token = null;
        for (int page = 0; page < MaxPages && next is not null; page++)
        {
            using var response = await GetAsync(next, token, ct).ConfigureAwait(false);
            HttpResponseMessage current = response;
            HttpResponseMessage? retried = null;
            try
            {
                if (current.StatusCode == HttpStatusCode.Unauthorized && token is null)
                {
                    token = await GetAnonymousTokenAsync(current, repository, registry, ct).ConfigureAwait(false);
                    if (token is null)
                    {
                        return tags;
                    }

                    retried = await GetAsync(next, token, ct).ConfigureAwait(false);
                    current = retried;
                }

                if (!current.IsSuccessStatusCode)
                {
                    return tags;
                }

                using var json = JsonDocument.Parse(await ReadCappedAsync(current.Content, MaxBodyBytes, ct).ConfigureAwait(false));
                if (json.RootElement.TryGetProperty("tags", out var list) && list.ValueKind == JsonValueKind.Array)
                {
                    tags.AddRange(list.EnumerateArray()
                        .Where(t => t.ValueKind == JsonValueKind.String)
                        .Select(t => t.GetString()!));
                }

                next = NextPage(current, next);
            }
            finally
            {
                retried?.Dispose();
            }
        }

        return tags;
    }

    private static Task<HttpResponseMessage> GetAsync(Uri uri, string? token, CancellationToken ct)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, uri);
        request.Headers.Accept.ParseAdd("application/json");
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }

        return Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
    }

    /// <summary>Follows a bearer challenge anonymously: GET realm?service=…&amp;scope=repository:name:pull.</summary>
    private static async Task<string?> GetAnonymousTokenAsync(
        HttpResponseMessage challenge, string repository, Uri registry, CancellationToken ct)
    {
        var bearer = challenge.Headers.WwwAuthenticate
            .FirstOrDefault(h => h.Scheme.Equals("Bearer", StringComparison.OrdinalIgnoreCase));
        if (bearer?.Parameter is null)
        {
            return null;
        }

        var parameters = ChallengeParameter.Matches(bearer.Parameter)
            .ToDictionary(m => m.Groups[1].Value.ToLowerInvariant(), m => m.Groups[2].Value);
        if (!parameters.TryGetValue("realm", out string? realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri))
        {
            return null;
        }

        // Only https realms, or plain http on a loopback registry's own host.
        bool loopbackHttp = realmUri.Scheme == Uri.UriSchemeHttp && realmUri.IsLoopback && registry.IsLoopback;
        if (realmUri.Scheme != Uri.UriSchemeHttps && !loopbackHttp)
        {
            return null;
        }

        var query = new List<string>();
        if (parameters.TryGetValue("service", out string? service))
        {
            query.Add("service=" + Uri.EscapeDataString(service));
        }

        query.Add("scope=" + Uri.EscapeDataString($"repository:{repository}:pull"));
        var builder = new UriBuilder(realmUri)
        {
            Query = string.IsNullOrEmpty(realmUri.Query)
                ? string.Join("&", query)
                : realmUri.Query.TrimStart('?') + "&" + string.Join("&", query),
        };
        using var response = await GetAsync(builder.Uri, null, ct).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            return null;
        }

        using var json = JsonDocument.Parse(await ReadCappedAsync(response.Content, MaxTokenBytes, ct).ConfigureAwait(false));
        foreach (string name in new[] { "token", "access_token" })
        {
            if (json.RootElement.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String)
            {
                return value.GetString();
            }
        }

        return null;
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

    private static async Task<byte[]> ReadCappedAsync(HttpContent content, int cap, CancellationToken ct)
    {
        if (content.Headers.ContentLength > cap)
        {
            throw new InvalidDataException("Response too large.");
        }

        await using var stream = await content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[16384];
        int read;
        while ((read = await stream.ReadAsync(chunk, ct).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > cap)
            {
                throw new InvalidDataException("Response too large.");
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }
}
