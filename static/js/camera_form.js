// The camera form's Test source button: the server grabs one frame from the source as typed
// (nothing is saved) and answers it as a JPEG, shown under the button, or says in words why it
// could not (JSON {"error": …}). One test at a time; the server bounds each one in time.

const form = document.getElementById("camera-form");
const button = document.getElementById("source-test-button");
const status = document.getElementById("source-test-status");
const errorLine = document.getElementById("source-test-error");
const image = document.getElementById("source-test-image");
let shownUrl = null;

function showError(message) {
  image.hidden = true;
  errorLine.textContent = message;
  errorLine.hidden = false;
  status.textContent = "";
}

function showFrame(blob) {
  if (shownUrl) URL.revokeObjectURL(shownUrl);
  shownUrl = URL.createObjectURL(blob);
  image.onload = () => {
    status.textContent = `Got a ${image.naturalWidth}×${image.naturalHeight} frame.`;
  };
  image.src = shownUrl;
  image.hidden = false;
  errorLine.hidden = true;
}

async function testSource() {
  const body = new FormData();
  for (const name of ["csrfmiddlewaretoken", "source", "max_width", "jpeg_quality"]) {
    body.append(name, form.elements[name].value);
  }
  // Adding: the organization chosen in the form; changing: the camera's own.
  body.append("organization", form.elements.organization?.value ?? form.dataset.organization);
  button.disabled = true;
  status.textContent = "Reading one frame…";
  try {
    const response = await fetch(form.dataset.sourceTestUrl, {
      method: "POST",
      body,
      credentials: "same-origin",
      headers: { "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
    });
    if (response.ok && response.headers.get("Content-Type") === "image/jpeg") {
      showFrame(await response.blob());
      return;
    }
    let message = `The test failed (HTTP ${response.status}).`;
    try {
      message = (await response.json()).error || message;
    } catch {
      // not JSON (a proxy's error page): the status says enough
    }
    showError(message);
  } catch {
    showError("The server cannot be reached; try again.");
  } finally {
    button.disabled = false;
  }
}

button.addEventListener("click", testSource);
