using System.Net;
using System.Text.Json;

namespace OrasStaging.Oci;

/// <summary>
/// Maps a registry's final non-success answer to the stable error ids, with the registry's own error text
/// (distribution spec, "Error Codes": <c>{"errors":[{"code","message"}]}</c>) redacted and shortened.
/// </summary>
internal static class RegistryErrors
{
    private const int MaxErrorBodyBytes = 64 * 1024;

    /// <summary>The error for <paramref name="response"/>; <paramref name="notFound"/> is the id a 404 means here.</summary>
    public static async Task<OrasStagingException> FromResponseAsync(HttpResponseMessage response, RegistryRequest request,
        ErrorCode notFound, bool hasCredential, TimeSpan stallTimeout, CancellationToken ct)
    {
        string detail = await ErrorTextAsync(response, stallTimeout, ct).ConfigureAwait(false);
        int status = (int)response.StatusCode;
        return response.StatusCode switch
        {
            HttpStatusCode.NotFound => new OrasStagingException(notFound,
                $"{request.What} was not found in {request.Registry}/{request.Repository} (HTTP 404{detail}).",
                notFound == ErrorCode.ManifestNotFound ? "Check the repository name and the tag or digest." : "Check the digest."),
            HttpStatusCode.Unauthorized => new OrasStagingException(ErrorCode.AuthenticationFailed,
                $"{request.Registry} refused {request.What} with HTTP 401{detail}" + (hasCredential ? "; the credentials were not accepted." : "; it needs credentials."),
                hasCredential ? "Check the user name and password or token." : "Pass -Credential, or log in with 'docker login'."),
            HttpStatusCode.Forbidden => new OrasStagingException(ErrorCode.AccessDenied,
                $"{request.Registry} denied access to {request.Repository} for {request.What} (HTTP 403{detail}).",
                "Check that the account may pull this repository."),
            _ when RetryPolicy.IsTransient(response.StatusCode) => new OrasStagingException(ErrorCode.RegistryUnavailable,
                $"{request.Registry} kept failing for {request.What} (HTTP {status}{detail}).",
                "Try again later; -MaximumRetryCount and -RetryIntervalSec control retries."),
            _ => new OrasStagingException(ErrorCode.RegistryProtocolError,
                $"{request.Registry} answered {request.What} with HTTP {status}{detail}."),
        };
    }

    /// <summary>The registry's own words, or nothing: an error body that stalls, drops or is malformed never hides the status.</summary>
    private static async Task<string> ErrorTextAsync(HttpResponseMessage response, TimeSpan stallTimeout, CancellationToken ct)
    {
        try
        {
            byte[] body = await RegistryTransport.ReadCappedAsync(response.Content, MaxErrorBodyBytes, "error body", ct, stallTimeout).ConfigureAwait(false);
            using var doc = JsonDocument.Parse(body);
            // Any shape is possible here (an array, an "errors" entry that is a string): only an object is read.
            if (doc.RootElement.ValueKind == JsonValueKind.Object
                && doc.RootElement.TryGetProperty("errors", out var errors) && errors.ValueKind == JsonValueKind.Array
                && errors.GetArrayLength() > 0 && errors[0].ValueKind == JsonValueKind.Object)
            {
                var first = errors[0];
                string code = first.TryGetProperty("code", out var c) ? c.ToString() : string.Empty;
                string message = first.TryGetProperty("message", out var m) ? m.ToString() : string.Empty;
                string text = Redaction.Text($"{code} {message}".Trim());
                return text.Length == 0 ? string.Empty : ": " + (text.Length > 200 ? text[..200] + "…" : text);
            }
        }
        catch (Exception ex) when (ex is JsonException or OrasStagingException or IOException or HttpRequestException)
        {
        }

        return string.Empty;
    }
}
