package scoring

import (
	"encoding/json"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/tensor"
)

// swagger builds the Swagger 2.0 document Azure ML's inference server serves at /swagger.json:
// a health check on "/", RunMLService on "/score", ServiceInput/ServiceOutput from the
// inference_schema decorators (or the ONNX model's inputs and outputs).
func swagger(m backend.Metadata) ([]byte, error) {
	input := json.RawMessage(m.InputSchema)
	output := json.RawMessage(m.OutputSchema)
	if input == nil && len(m.Inputs) > 0 {
		input = mustJSON(tensorsSchema(m.Inputs, true))
	}
	if output == nil && len(m.Outputs) > 0 {
		output = mustJSON(tensorsSchema(m.Outputs, false))
	}
	if input == nil {
		input = json.RawMessage(`{"type":"object","example":{}}`)
	}
	if output == nil {
		output = json.RawMessage(`{"type":"object","example":{}}`)
	}
	errorResponse := map[string]any{"description": "The service failed to execute due to an error.", "schema": map[string]any{"$ref": "#/definitions/ErrorResponse"}}
	doc := map[string]any{
		"swagger": "2.0",
		"info": map[string]any{
			"title":       m.Name,
			"description": "API specification for the Azure Machine Learning service " + m.Name,
			"version":     "1.0",
		},
		"schemes":  []string{"https"},
		"consumes": []string{"application/json"},
		"produces": []string{"application/json"},
		"securityDefinitions": map[string]any{
			"Bearer": map[string]any{"type": "apiKey", "name": "Authorization", "in": "header", "description": "For example: Bearer abc123"},
		},
		"paths": map[string]any{
			"/": map[string]any{"get": map[string]any{
				"operationId": "ServiceHealthCheck",
				"description": "Simple health check endpoint to ensure the service is up at any given point.",
				"responses": map[string]any{
					"200": map[string]any{
						"description": "If service is up and running, this response will be returned with the content 'Healthy'",
						"schema":      map[string]any{"type": "string"},
						"examples":    map[string]any{"application/json": "Healthy"},
					},
					"default": errorResponse,
				},
			}},
			"/score": map[string]any{"post": map[string]any{
				"operationId": "RunMLService",
				"description": "Run web service's model and get the prediction output",
				"security":    []any{map[string]any{"Bearer": []any{}}},
				"parameters": []any{map[string]any{
					"name": "serviceInputPayload", "in": "body",
					"description": "The input payload for executing the real-time machine learning service.",
					"schema":      map[string]any{"$ref": "#/definitions/ServiceInput"},
				}},
				"responses": map[string]any{
					"200": map[string]any{
						"description": "The service processed the input correctly and provided a result prediction, if applicable.",
						"schema":      map[string]any{"$ref": "#/definitions/ServiceOutput"},
					},
					"default": errorResponse,
				},
			}},
		},
		"definitions": map[string]any{
			"ServiceInput":  input,
			"ServiceOutput": output,
			"ErrorResponse": map[string]any{"type": "object", "properties": map[string]any{
				"status_code": map[string]any{"type": "integer", "format": "int32"},
				"message":     map[string]any{"type": "string"},
			}},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

// tensorsSchema describes the /score JSON of a tensor model: {"data": nested array} for one input,
// {name: nested array} for several.
func tensorsSchema(specs []tensor.Spec, isInput bool) map[string]any {
	props := map[string]any{}
	for _, s := range specs {
		key := s.Name
		if isInput && len(specs) == 1 {
			key = "data"
		}
		props[key] = arraySchema(s)
	}
	return map[string]any{"type": "object", "properties": props}
}

func arraySchema(s tensor.Spec) map[string]any {
	item := map[string]any{"type": "number", "format": "float"}
	switch s.Datatype {
	case "FP64":
		item["format"] = "double"
	case "INT64", "UINT64":
		item = map[string]any{"type": "integer", "format": "int64"}
	case "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8":
		item = map[string]any{"type": "integer", "format": "int32"}
	case "BOOL":
		item = map[string]any{"type": "boolean"}
	case "BYTES":
		item = map[string]any{"type": "string"}
	}
	schema := item
	for range s.Shape {
		schema = map[string]any{"type": "array", "items": schema}
	}
	schema["description"] = "shape " + tensor.ShapeString(s.Shape) + " (-1: any size)"
	return schema
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
